"""The real bundled SmolLM2-135M-Instruct, end to end (loads in ~1 s once converted and cached)."""

from __future__ import annotations

import time

import pytest

from moddecode import MOD, Policy
from moddecode.bundled import bundled_smollm2_gguf, converted_gguf_folder
from moddecode.demo import DEMO_OBJECTIVES, run_demo
from helpers import generate_alone  # tests/ is on sys.path (conftest)

pytestmark = pytest.mark.slow

PROMPTS = ["What is the capital of France?", "Name a fruit."]


@pytest.fixture(scope="module")
def smol_policies():
    return [Policy.load("smollm2", system_prompt=text, name=name) for name, text in DEMO_OBJECTIVES.items()]


def test_bundled_model_loads_once_and_is_cached(smol_policies):
    folder = converted_gguf_folder(bundled_smollm2_gguf())
    assert (folder / "config.json").exists() and any(folder.glob("*.safetensors"))
    start = time.perf_counter()
    again = Policy.load("smollm2")
    assert time.perf_counter() - start < 5  # no second conversion, no second model
    assert again.model is smol_policies[0].model


def test_one_hot_weights_reproduce_the_bundled_policy(smol_policies):
    mod = MOD(smol_policies)
    for i, policy in enumerate(smol_policies):
        weights = [0.0, 0.0, 0.0]
        weights[i] = 1.0
        results = mod.generate(PROMPTS, weights, max_new_tokens=16, return_diagnostics=True)
        for prompt, result in zip(PROMPTS, results):
            own = generate_alone(policy, prompt, 16)
            own = own[: next((k for k, t in enumerate(own) if t in policy.eos_token_ids()), len(own))]
            assert result.token_ids == own


def test_mixed_weights_and_per_row_weights_on_the_real_model(smol_policies):
    mod = MOD(smol_policies)
    rows = [[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]]
    together = mod.generate(PROMPTS, rows, max_new_tokens=12)
    assert all(text.strip() for text in together)
    assert together == [mod.generate(p, w, max_new_tokens=12) for p, w in zip(PROMPTS, rows)]


def test_demo_batches_every_prompt_and_weighting(smol_policies):
    from moddecode.adapters import DEMO_ADAPTERS

    for prompted, expected in ((False, list(DEMO_ADAPTERS)), (True, list(DEMO_OBJECTIVES))):
        names, rows = run_demo(["Name a color."], [(1, 0, 0), (0, 0, 1)], max_new_tokens=8, prompted=prompted)
        assert names == expected
        assert [r.weights for r in rows] == [(1, 0, 0), (0, 0, 1)]
        assert all(r.response.strip() for r in rows)
        # the scores printed beside each response are those of that response
        assert all(r.scores["words"] == len(r.response.split()) for r in rows)
        assert all(-1 <= r.scores["VADER"] <= 1 for r in rows)


def test_gguf_path_and_alias_share_one_model(smol_policies):
    by_path = Policy.load(str(bundled_smollm2_gguf()))
    assert by_path.model is smol_policies[0].model
    assert by_path.encode("hi") == by_path.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_dict=False)


def test_bundled_adapters_carry_metadata_and_batch_together():
    from moddecode.adapters import DEMO_ADAPTERS, bundled_adapter, bundled_adapters

    assert set(DEMO_ADAPTERS) <= set(bundled_adapters())
    policies = [Policy.load("smollm2", adapter=bundled_adapter(n)) for n in DEMO_ADAPTERS]
    assert [p.name for p in policies] == list(DEMO_ADAPTERS)  # named by their metadata's objective
    assert all(p.metadata["divergence"] == "reverse_kl" and p.metadata["base"] == "smollm2" for p in policies)
    assert len({id(p.model) for p in policies}) == 1  # one base model, three PEFT adapters
    mod = MOD(policies)
    for i, policy in enumerate(policies):
        weights = [0.0] * 3
        weights[i] = 1.0
        got = mod.generate("Name a fruit.", weights, max_new_tokens=12, return_diagnostics=True)
        own = generate_alone(policy, "Name a fruit.", 12)
        own = own[: next((k for k, t in enumerate(own) if t in policy.eos_token_ids()), len(own))]
        assert got.token_ids == own, policy.name
