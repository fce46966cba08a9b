"""The fluency scorer against a brute-force loop that scores one response token at a time, unpadded."""

from __future__ import annotations

import math

import pytest
import torch

PAIRS = [
    ("tell me about the sky", "the sky is blue and very happy"),
    ("what is a cat", "a cat"),
    ("why", ""),  # empty: the end-of-turn token alone
    ("hello world please tell me a long answer about dogs and cats", "no"),
]


def brute_force(model, tokenizer, vocab: int, prompt: str, response: str) -> float:
    """(1/n) sum_t log p(r_t | chat(prompt), r_<t), one unpadded forward per token, float64."""
    prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               return_dict=False)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    total = 0.0
    with torch.no_grad():
        for t, token in enumerate(response_ids):
            ids = torch.tensor([list(prompt_ids) + response_ids[:t]])
            logits = model(input_ids=ids).logits[0, -1, :vocab].double()
            total += float(torch.log_softmax(logits, -1)[token])
    return total / len(response_ids)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_fluency_matches_token_by_token_loop(base_a, cache, batch_size):
    from moddecode.eval.scorers import FluencyScorer
    from moddecode.policy import Policy

    policy = Policy.load(str(base_a), cache=cache)
    scorer = FluencyScorer(policy, batch_size=batch_size)
    got = scorer.score([p for p, _ in PAIRS], [r for _, r in PAIRS])
    tok = policy.tokenizer
    want = [brute_force(policy.model, tok, len(tok), p, r) for p, r in PAIRS]
    assert len(got) == len(PAIRS)
    for g, w in zip(got, want):
        assert g <= 0 and math.isfinite(g)
        assert g == pytest.approx(w, abs=1e-5)
    assert len({round(g, 6) for g in got}) == len(got)  # the pairs really differ: the test can tell them apart


def test_fluency_under_an_adapter_uses_that_adapter_and_the_plain_model_stays_plain(base_a, adapters, cache):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from moddecode.eval.scorers import FluencyScorer
    from moddecode.policy import Policy

    prompts, responses = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    plain = Policy.load(str(base_a), cache=cache)
    adapted = Policy.load(str(base_a), adapter=adapters[1], cache=cache)  # the shared model is a PeftModel now
    assert plain.base is adapted.base and plain.base.has_adapters
    got_plain = FluencyScorer(plain, batch_size=4).score(prompts, responses)
    got_adapted = FluencyScorer(adapted, batch_size=4).score(prompts, responses)

    tok = plain.tokenizer
    reference = AutoModelForCausalLM.from_pretrained(base_a).eval()
    want_plain = [brute_force(reference, tok, len(tok), p, r) for p, r in PAIRS]
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_a), str(adapters[1])).eval()
    want_adapted = [brute_force(with_adapter, tok, len(tok), p, r) for p, r in PAIRS]
    assert got_plain == pytest.approx(want_plain, abs=1e-5)
    assert got_adapted == pytest.approx(want_adapted, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(got_plain, got_adapted)) > 1e-3


def test_fluency_is_registered_and_checks_its_options(base_a, tmp_path):
    from moddecode.errors import ConfigError, ModelLoadError
    from moddecode.eval.scorers import available_scorers, check_scorer_spec, get_scorer

    assert "fluency" in available_scorers()
    with pytest.raises(ModelLoadError, match="adapter folder"):
        check_scorer_spec({"type": "fluency", "adapter": str(tmp_path / "missing")})
    with pytest.raises(ModelLoadError, match="does not exist"):
        check_scorer_spec({"type": "fluency", "model": str(tmp_path / "nowhere" / "model")})
    with pytest.raises(ConfigError, match="batch_size"):
        get_scorer({"type": "fluency", "model": str(base_a), "batch_size": 0})
    scorer = get_scorer({"type": "fluency", "model": str(base_a), "name": "fl"})
    assert scorer.name == "fl"
    assert scorer.score(["hello"], ["the cat sat"])[0] < 0
