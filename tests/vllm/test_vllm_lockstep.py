"""Siblings out of lockstep fail loudly: forced preemption with a tiny KV cache (reservation off) raises
LockstepError for that prompt, and nothing it emitted before is wrong. System-prompted policies (no LoRA)
decode on vLLM exactly as on the transformers engine.

This engine runs as vLLM is deployed: its engine core in another process, the logits processor loaded
there by name, so the failure reaches the client only through the tokens (protocol.py)."""

from __future__ import annotations

import pytest
from conftest import needs_vllm

from moddecode.demo import DEMO_OBJECTIVES

pytestmark = [needs_vllm, pytest.mark.slow]
PROMPT = "Tell me about the history of bread."
MAX_MODEL_LEN = 192  # vLLM needs a KV cache of at least this many tokens (plus its null block): no more
BLOCK = 32  # the CPU attention backend takes multiples of 32


@pytest.fixture(scope="module")
def prompted():
    from moddecode import Policy

    return [Policy.load("smollm2", system_prompt=DEMO_OBJECTIVES[n], name=n) for n in ("concise", "humorous")]


@pytest.fixture(scope="module")
def tiny_kv_mod(prompted):
    from moddecode import MOD

    import vllm.envs

    cfg = prompted[0].model.config
    bytes_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
        vllm.envs.disable_envs_cache()  # an in-process engine built earlier froze the environment
        mod = MOD(prompted, engine="vllm", engine_options=dict(
            enforce_eager=True, max_model_len=MAX_MODEL_LEN, block_size=BLOCK, reserve_kv_cache=False,
            kv_cache_memory_bytes=(MAX_MODEL_LEN + BLOCK) * bytes_per_token))
    yield mod
    mod.engine.close()


def test_system_prompted_policies_equal_the_transformers_engine(tiny_kv_mod, prompted):
    from moddecode import MOD

    w = (0.4, 0.6)
    assert tiny_kv_mod.generate(PROMPT, w, max_new_tokens=12) == MOD(prompted).generate(PROMPT, w, max_new_tokens=12)


def test_a_preempted_sibling_fails_its_prompt_without_a_wrong_token(tiny_kv_mod, prompted):
    from moddecode import MOD
    from moddecode.engines.vllm import LockstepError

    engine = tiny_kv_mod.engine
    assert not engine.llm.llm_engine.engine_core.__class__.__name__.startswith("Inproc")
    prompt_tokens = sum(len(p.encode(PROMPT)) for p in prompted)
    limit = MAX_MODEL_LEN - max(len(p.encode(PROMPT)) for p in prompted)
    assert prompt_tokens + 2 * limit > MAX_MODEL_LEN + BLOCK, "the siblings must outgrow the KV cache"
    assert engine.kv_blocks == 0  # reservation off: vLLM admits them and must preempt one
    streamed = []
    with pytest.raises(LockstepError, match="prompt 0 .at token .*lockstep.*KV-cache") as info:
        for delta in tiny_kv_mod.stream(PROMPT, (0.5, 0.5), max_new_tokens=limit, ignore_eos=True):
            streamed.append(delta.text)
    failed_at = info.value.position
    assert info.value.index == 0 and 0 < failed_at < limit  # preempted mid-way, not refused at the start
    # what was streamed before the failure is the start of the true MOD text (the transformers engine's)
    truth = MOD(prompted).generate(PROMPT, (0.5, 0.5), max_new_tokens=failed_at, ignore_eos=True)
    assert "".join(streamed) and truth.startswith("".join(streamed))
    # the engine is usable again afterwards (the failed siblings were aborted)
    assert tiny_kv_mod.generate(PROMPT, (0.5, 0.5), max_new_tokens=4) == \
        MOD(prompted).generate(PROMPT, (0.5, 0.5), max_new_tokens=4)
