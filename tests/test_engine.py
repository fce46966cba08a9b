"""End-to-end decoding on tiny random models: exactness, batching, beam search, streaming."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from moddecode import MOD, Policy, combine_logprobs
from moddecode.engines.rows import ModelRows
from helpers import adapter_active, generate_alone  # tests/ is on sys.path (conftest)

PROMPTS = ["tell me about the sky", "what is a cat", "hello"]


@pytest.fixture
def policies(base_a, base_b, adapters, cache):
    """Two LoRA adapters, a prompted policy and the plain base (one group), plus another base model."""
    return [
        Policy.load(str(base_a), adapter=adapters[0], name="lora0", cache=cache),
        Policy.load(str(base_a), adapter=adapters[1], name="lora1", cache=cache),
        Policy.load(str(base_a), system_prompt="please be funny", name="funny", cache=cache),
        Policy.load(str(base_a), name="base", cache=cache),
        Policy.load(str(base_b), name="other", cache=cache),
    ]


def alone(policy, prompt, n):
    ids = generate_alone(policy, prompt, n)
    eos = policy.eos_token_ids()
    cut = next((i for i, t in enumerate(ids) if t in eos), len(ids))
    return ids[:cut]


def test_one_hot_weights_reproduce_each_policys_own_greedy_output(policies):
    mod = MOD(policies)
    for i, policy in enumerate(policies):
        weights = [0.0] * len(policies)
        weights[i] = 1.0
        results = mod.generate(PROMPTS, weights, max_new_tokens=12, return_diagnostics=True)
        for prompt, result in zip(PROMPTS, results):
            assert result.token_ids == alone(policy, prompt, 12), (policy.name, prompt)


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "alpha:0.5"])
@pytest.mark.parametrize("scope", ["sequence", "token"])
def test_per_prompt_weights_equal_separate_calls(policies, divergence, scope):
    mod = MOD(policies[:3], divergence=divergence)
    rows = [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.6, 0.6, -0.2]]
    together = mod.generate(PROMPTS, rows, max_new_tokens=10, scope=scope)
    assert together == [mod.generate(p, w, max_new_tokens=10, scope=scope) for p, w in zip(PROMPTS, rows)]


def count_forwards(model):
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


def test_policies_of_one_base_run_as_one_forward_per_step(policies):
    mod = MOD(policies)  # four policies on base_a, one on base_b
    calls_a, ha = count_forwards(policies[0].base.model)
    calls_b, hb = count_forwards(policies[4].base.model)
    try:
        result = mod.generate("hello", [0.2] * 5, max_new_tokens=6, return_diagnostics=True)
    finally:
        ha.remove()
        hb.remove()
    steps = len(result.diagnostics)
    assert len(calls_a) == steps and len(calls_b) == steps  # prefill + (steps - 1) decode forwards each


def test_reference_runs_only_when_needed(policies, base_b, cache):
    reference = Policy.load(str(base_b), name="ref", cache=cache)
    calls, handle = count_forwards(reference.base.model)
    try:
        MOD(policies[:2], reference=reference).generate("hello", [0.5, 0.5], max_new_tokens=4)
        assert not calls  # reverse KL on the simplex: the reference cancels
        MOD(policies[:2], reference=reference, divergence="forward_kl").generate("hello", [0.7, 0.7], max_new_tokens=4)
        assert not calls  # forward KL never needs it
        MOD(policies[:2], reference=reference).generate("hello", [0.7, 0.7], max_new_tokens=4)
        assert calls  # off the simplex it does
    finally:
        handle.remove()


def test_same_source_loads_one_model(base_a, cache):
    p, q = Policy.load(str(base_a), cache=cache), Policy.load(str(base_a), system_prompt="x", cache=cache)
    assert p.base is q.base and p.model is q.model


def test_padded_lm_head_is_cut_to_the_tokenizer(policies):
    engine = ModelRows(policies, policies[0].base.vocab_size)
    logprobs = engine.add(["hello"])
    assert logprobs.shape == (5, 1, len(policies[0].tokenizer))
    torch.testing.assert_close(logprobs.exp().sum(-1).cpu(), torch.ones(5, 1))


def teacher_forced_logprobs(policy, prompt, continuations):
    """log pi(continuation | prompt) for each continuation (lists of token ids), by a plain forward."""
    prompt_ids = policy.encode(prompt)
    out = []
    with torch.no_grad(), adapter_active(policy):
        for cont in continuations:
            ids = torch.tensor([prompt_ids + cont], device=policy.base.device)
            logits = policy.model(input_ids=ids).logits[0, :, : policy.base.vocab_size]
            lp = torch.log_softmax(logits.double(), -1)
            out.append(sum(float(lp[len(prompt_ids) - 1 + k, t]) for k, t in enumerate(cont)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("divergence, weights", [("forward_kl", [0.4, 0.6]), ("jsd", [0.5, 0.5]), ("reverse_kl", [0.8, 0.5])])
def test_beam_search_finds_the_brute_force_best_sequence(policies, divergence, weights, base_b, cache):
    """With K = V and two steps, beam search is exhaustive: compare with enumerating every sequence."""
    pols, reference = policies[:2], policies[4]
    vocab = pols[0].base.vocab_size
    eos = pols[0].tokenizer.eos_token_id
    mod = MOD(pols, reference=reference, divergence=divergence)
    result = mod.generate("hello", weights, strategy="beam", num_beams=vocab, max_new_tokens=2,
                          return_diagnostics=True)
    # every candidate: [eos] (empty answer), [t1, eos] (one token), [t1, t2] (length limit)
    firsts = [t for t in range(vocab) if t != eos]
    cands = [[eos]] + [[t1, t2] for t1, t2 in itertools.product(firsts, range(vocab))]
    lp = torch.stack([teacher_forced_logprobs(p, "hello", cands) for p in [*pols, reference]])
    scores = combine_logprobs(lp[:2].unsqueeze(1), weights, divergence, ref_logprobs=lp[2].unsqueeze(0))[0]
    best = cands[int(scores.argmax())]
    expected_ids = [t for t in best if t != eos]
    assert result.token_ids == expected_ids
    assert result.score == pytest.approx(float(scores.max()), abs=1e-4)  # float32 forwards


def test_beam_with_one_beam_equals_greedy(policies):
    mod = MOD(policies[:3], divergence="alpha:0.5")
    assert mod.generate(PROMPTS, [0.3, 0.3, 0.4], strategy="beam", num_beams=1, max_new_tokens=8) == \
        mod.generate(PROMPTS, [0.3, 0.3, 0.4], max_new_tokens=8)


def test_sampling_is_reproducible_and_top_k_1_is_greedy(policies):
    mod = MOD(policies[:3])
    w = [0.3, 0.3, 0.4]
    a = mod.generate(PROMPTS, w, strategy="sample", seed=5, max_new_tokens=10)
    b = mod.generate(PROMPTS, w, strategy="sample", seed=5, max_new_tokens=10)
    assert a == b
    seeds = {tuple(mod.generate(PROMPTS, w, strategy="sample", seed=s, max_new_tokens=10)) for s in range(6)}
    assert len(seeds) > 1
    assert mod.generate(PROMPTS, w, strategy="sample", top_k=1, seed=1, max_new_tokens=10) == \
        mod.generate(PROMPTS, w, max_new_tokens=10)
    assert mod.generate(PROMPTS, w, strategy="sample", top_p=1e-9, seed=2, max_new_tokens=10) == \
        mod.generate(PROMPTS, w, max_new_tokens=10)


def test_stop_strings_and_streaming_agree_with_generate(policies):
    mod = MOD(policies[:2])
    w = [0.5, 0.5]
    full = mod.generate(PROMPTS, w, max_new_tokens=12)
    words = full[0].split()
    assert len(words) >= 3
    stop = " " + words[2]
    cut = mod.generate(PROMPTS, w, max_new_tokens=12, stop=[stop])
    assert cut[0] == full[0][: full[0].find(stop)]
    streamed = ["", "", ""]
    for delta in mod.stream(PROMPTS, w, max_new_tokens=12, stop=[stop]):
        streamed[delta.index] += delta.text
    assert streamed == cut


def test_diagnostics_explain_the_choice(policies):
    mod = MOD(policies[:3])
    w = [0.2, 0.3, 0.5]
    result = mod.generate("hello", w, max_new_tokens=5, scope="token", ignore_eos=True, return_diagnostics=True)
    assert len(result.diagnostics) == len(result.token_ids) == 5  # one per token, never vacuous
    for d in result.diagnostics:
        assert d.score == pytest.approx(sum(wi * li for wi, li in zip(w, d.logprobs)), abs=1e-6)
        assert d.contributions == pytest.approx([wi * (1 + li) for wi, li in zip(w, d.logprobs)], abs=1e-5)
    first = result.diagnostics[0]
    expected = [float(teacher_forced_logprobs(p, "hello", [[first.token_id]])[0]) for p in policies[:3]]
    assert first.logprobs == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "alpha:0.5"])
@pytest.mark.parametrize("scope", ["sequence", "token"])
def test_diagnostic_score_and_contributions_describe_the_same_quantity(policies, divergence, scope):
    mod = MOD(policies[:3], divergence=divergence)
    result = mod.generate("hello", [0.2, 0.3, 0.5], max_new_tokens=6, scope=scope, ignore_eos=True,
                          return_diagnostics=True)
    assert len(result.diagnostics) == 6
    inverse = mod.divergence.grad_f_inverse
    cumulative = [0.0, 0.0, 0.0]
    for d in result.diagnostics:
        # score = log (grad f)^-1(sum_i contributions_i): no reference runs for these weights
        assert d.score == pytest.approx(math.log(float(inverse(torch.tensor(sum(d.contributions), dtype=torch.float64)))),
                                        abs=1e-6)
        cumulative = [c + l for c, l in zip(cumulative, d.logprobs)]
        level = cumulative if scope == "sequence" else d.logprobs  # logprobs stay next-token either way
        expected = mod.divergence.contributions(torch.tensor(level, dtype=torch.float64).unsqueeze(1),
                                                torch.tensor([[0.2], [0.3], [0.5]], dtype=torch.float64), None)
        assert d.contributions == pytest.approx(expected[:, 0].tolist(), rel=1e-6)


def test_per_prompt_token_limits_equal_separate_calls(policies):
    mod = MOD(policies[:2])
    limits = [3, 9, 5]
    together = mod.generate(PROMPTS, [0.5, 0.5], max_new_tokens=limits, return_diagnostics=True)
    for prompt, limit, result in zip(PROMPTS, limits, together):
        solo = mod.generate(prompt, [0.5, 0.5], max_new_tokens=limit, return_diagnostics=True)
        assert result.token_ids == solo.token_ids and result.finish_reason == solo.finish_reason
        assert len(result.token_ids) <= limit
    finals = [d.result for d in mod.stream(PROMPTS, [0.5, 0.5], max_new_tokens=limits) if d.result is not None]
    assert sorted(r.text for r in finals) == sorted(r.text for r in together)


def test_small_batch_linear_gives_the_same_tokens(policies, monkeypatch):
    from moddecode.engines import cpu_linear

    monkeypatch.setenv("MODDECODE_CPU_SMALL_BATCH", "0")  # read when the engine is built
    plain = MOD(policies[:2]).generate(PROMPTS[:1], [0.5, 0.5], max_new_tokens=8)
    monkeypatch.delenv("MODDECODE_CPU_SMALL_BATCH")
    rerouted = []
    original = cpu_linear.SmallBatchLinear.__torch_function__

    def counting(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.linear:
            rerouted.append(args[0].reshape(-1, args[0].shape[-1]).shape[0])
        return original(self, func, types, args, kwargs)

    monkeypatch.setattr(cpu_linear.SmallBatchLinear, "__torch_function__", counting)
    fast = MOD(policies[:2]).generate(PROMPTS[:1], [0.5, 0.5], max_new_tokens=8)
    assert fast == plain
    if policies[0].base.device.type == "cpu":  # 2 rows per decode step: every linear layer rerouted
        assert 2 in rerouted  # the base layers on both rows (LoRA layers see each adapter's row alone)
    x, w, b = torch.randn(3, 7), torch.randn(5, 7), torch.randn(5)
    with cpu_linear.SmallBatchLinear():
        got = torch.nn.functional.linear(x, w, b)
    torch.testing.assert_close(got, x @ w.T + b)


def test_seeded_sampling_ignores_batch_company_and_global_rng(policies):
    mod = MOD(policies[:2])
    alone = mod.generate(PROMPTS[0], [0.5, 0.5], strategy="sample", seed=3, max_new_tokens=8)
    together = mod.generate(PROMPTS, [0.5, 0.5], strategy="sample", seed=3, max_new_tokens=8)
    assert together[0] == alone
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    mod.generate(PROMPTS[0], [0.5, 0.5], strategy="sample", max_new_tokens=4)  # unseeded
    assert torch.equal(torch.rand(3), expected)


def test_bad_stop_and_limit_lists(policies):
    from moddecode import ConfigError

    mod = MOD(policies[:2])
    with pytest.raises(ConfigError, match="stop must be a string or a list of strings"):
        mod.generate("hello", [0.5, 0.5], stop=5)
    with pytest.raises(ConfigError, match="empty list"):
        mod.generate(["hello"], [0.5, 0.5], max_new_tokens=[])


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_generations_are_generate_results_without_diagnostics(policies, strategy):
    mod = MOD(policies[:3])
    prompts, weights = ["hello", "the sky"], [[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]
    options = dict(strategy=strategy, max_new_tokens=[5, 3] if strategy != "beam" else 4, seed=7)
    full = mod.generate(prompts, weights, return_diagnostics=True, **options)
    plain = mod.generations(prompts, weights, **options)
    assert [(g.text, g.token_ids, g.finish_reason, g.score) for g in plain] == [
        (g.text, g.token_ids, g.finish_reason, g.score) for g in full]
    assert all(g.diagnostics == [] for g in plain)
