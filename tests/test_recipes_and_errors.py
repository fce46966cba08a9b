"""Recipes are MOD with fixed weights; bad input fails with a clear, typed error."""

from __future__ import annotations

import pytest
import torch

from moddecode import (
    MOD,
    ConfigError,
    IncompatiblePoliciesError,
    InfeasibleWeightsError,
    MissingReferenceError,
    ModelLoadError,
    Policy,
    UnknownNameError,
)
from moddecode.engines.rows import ModelRows
from moddecode.recipes import dera, multi_objective_proxy_tuning, proxy_tuning


@pytest.fixture
def trio(base_a, base_b, adapters, cache):
    return (Policy.load(str(base_b), name="large", cache=cache),
            Policy.load(str(base_a), adapter=adapters[0], name="tuned", cache=cache),
            Policy.load(str(base_a), name="small", cache=cache))


def first_scores(policies, weights, **mod_kwargs):
    """Combined next-token score after 'hello', and the members' log-probs."""
    mod = MOD(policies, **mod_kwargs)
    lp = ModelRows(policies, mod.vocab_size).add(["hello"])[:, 0].double()
    return lp


def test_proxy_tuning_is_large_plus_tuned_minus_base(trio):
    recipe = proxy_tuning(*trio)
    lp = first_scores(list(trio), recipe.weights)
    expected_first = int((lp[0] + lp[1] - lp[2]).argmax())
    result = recipe.generate("hello", max_new_tokens=1, return_diagnostics=True)
    assert result.token_ids[:1] == [expected_first] or (not result.token_ids and expected_first in trio[0].eos_token_ids())


def test_dera_interpolates_between_reference_and_aligned(trio):
    aligned, reference = trio[1], trio[2]
    for strength, target in [(0.0, reference), (1.0, aligned)]:
        got = dera(aligned, reference, strength).generate("hello", max_new_tokens=6)
        assert got == MOD([target]).generate("hello", [1.0], max_new_tokens=6)
    lp = first_scores([aligned, reference], None)
    expected = int((lp[1] + 2.0 * (lp[0] - lp[1])).argmax())
    result = dera(aligned, reference, 2.0).generate("hello", max_new_tokens=1, return_diagnostics=True)
    assert result.diagnostics[0].token_id == expected


def test_multi_objective_proxy_tuning_weights(trio, adapters, base_a, cache):
    large, tuned, small = trio
    tuned2 = Policy.load(str(base_a), adapter=adapters[1], cache=cache)
    recipe = multi_objective_proxy_tuning(large, small, [tuned, tuned2], [0.3, 0.7])
    assert recipe.weights == (1.0, -1.0, 0.3, 0.7)
    with pytest.raises(ConfigError, match="sum to 1"):
        multi_objective_proxy_tuning(large, small, [tuned, tuned2], [0.3, 0.3])


def test_bad_decoding_arguments(trio):
    mod = MOD(list(trio[1:]))
    cases = [
        (dict(weights=[0.5]), "1 weight"),
        (dict(weights=[0.5, float("nan")]), "finite"),
        (dict(weights=[[0.5, 0.5]] * 2), "2 weight vectors for 1 prompts"),
        (dict(strategy="gredy"), "Did you mean 'greedy'"),
        (dict(scope="tokens"), "Did you mean 'token'"),
        (dict(strategy="sample", temperature=0.0), "temperature"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=0), "top_k"),
        (dict(num_beams=0, strategy="beam"), "num_beams"),
        (dict(stop=[""]), "stop"),
    ]
    for overrides, match in cases:
        kwargs = dict(weights=[0.5, 0.5], max_new_tokens=3) | overrides
        weights = kwargs.pop("weights")
        with pytest.raises(ConfigError, match=match):
            mod.generate("hello", weights, **kwargs)
    with pytest.raises(ConfigError, match="prompts"):
        mod.generate([], [0.5, 0.5])
    with pytest.raises(ConfigError, match="beam search cannot stream"):
        next(mod.stream("hello", [0.5, 0.5], strategy="beam"))


def test_missing_reference_and_infeasible_weights(trio):
    mod = MOD(list(trio[1:]), divergence="jsd")
    with pytest.raises(MissingReferenceError, match="reference"):
        mod.generate("hello", [0.5, 0.5])
    with pytest.raises(MissingReferenceError, match="sum to 1"):
        MOD(list(trio[1:])).generate("hello", [0.9, 0.9])
    with pytest.raises(InfeasibleWeightsError, match=r"forward_kl.*\[-0\.5, -0\.5\]"):
        MOD(list(trio[1:]), divergence="forward_kl").generate("hello", [-0.5, -0.5])
    with pytest.raises(UnknownNameError, match="Did you mean 'jsd'"):
        MOD(list(trio[1:]), divergence="jds")


def test_policy_load_errors(tmp_path, base_a, cache):
    with pytest.raises(ModelLoadError, match="not found"):
        Policy.load(str(tmp_path / "missing.gguf"), cache=cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        Policy.load(str(tmp_path / "empty"), cache=cache)
    with pytest.raises(ModelLoadError, match="adapter folder not found"):
        Policy.load(str(base_a), adapter=tmp_path / "nope", cache=cache)
    with pytest.raises(ModelLoadError, match="not a PEFT adapter"):
        Policy.load(str(base_a), adapter=tmp_path / "empty", cache=cache)
    with pytest.raises(ModelLoadError, match="hub id needs network"):
        Policy.load("no-such-org/no-such-model-xyz", cache=cache)
    with pytest.raises(ConfigError, match="Policy objects"):
        MOD(["not a policy"])


def test_policies_with_different_vocabularies_are_rejected(tmp_path, base_a, cache):
    from tiny import make_model_folder, make_tokenizer

    other_tok = make_tokenizer()
    other_tok.add_tokens(["zebra", "quokka"])
    other = make_model_folder(tmp_path / "other", seed=3, tokenizer=other_tok)
    with pytest.raises(IncompatiblePoliciesError, match="different vocabularies"):
        MOD([Policy.load(str(base_a), cache=cache), Policy.load(str(other), cache=cache)])


def test_prompt_formatting_matches_the_chat_template(base_a, cache):
    plain = Policy.load(str(base_a), cache=cache)
    prompted = Policy.load(str(base_a), system_prompt="be funny", cache=cache)
    tok = plain.tokenizer
    user = [{"role": "user", "content": "hi there"}]
    assert plain.encode("hi there") == list(tok.apply_chat_template(user, add_generation_prompt=True, return_dict=False))
    with_system = [{"role": "system", "content": "be funny"}, *user]
    assert prompted.encode("hi there") == list(
        tok.apply_chat_template(with_system, add_generation_prompt=True, return_dict=False))
    assert torch.is_tensor(torch.tensor(plain.encode("hi there")))
