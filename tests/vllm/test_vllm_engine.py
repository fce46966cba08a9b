"""The vLLM engine decodes exactly what the transformers engine decodes (bundled SmolLM2 + adapters),
samples reproducibly from the combined distribution, and stops like it."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_vllm

from moddecode import combine_logprobs
from moddecode.decoding import DecodingConfig
from moddecode.decoding.sampling import sample_tokens
from moddecode.errors import ConfigError

pytestmark = [needs_vllm, pytest.mark.slow]

PROMPTS = ["Write a sentence about the sea.", "What is the capital of France?"]
WEIGHTINGS = [(1.0, 0.0, 0.0), (0.2, 0.5, 0.3), (1 / 3, 1 / 3, 1 / 3)]
N = 12  # new tokens per greedy comparison


@pytest.fixture(scope="module")
def hf_greedy(hf_mod):
    """The transformers engine's greedy text for every (prompt, weighting), decoded as one per-row call."""
    rows = [(p, w) for w in WEIGHTINGS for p in PROMPTS]
    texts = hf_mod.generate([p for p, _ in rows], [w for _, w in rows], max_new_tokens=N)
    return dict(zip(rows, texts))


def test_greedy_equals_transformers_engine_for_each_weighting(vllm_mod, hf_greedy):
    for w in WEIGHTINGS:
        assert vllm_mod.generate(PROMPTS, w, max_new_tokens=N) == [hf_greedy[p, w] for p in PROMPTS], w


def test_per_row_weights_in_one_call(vllm_mod, hf_greedy):
    rows = [(p, w) for w in WEIGHTINGS[::-1] for p in PROMPTS[::-1]]  # another order than the reference call
    got = vllm_mod.generate([p for p, _ in rows], [w for _, w in rows], max_new_tokens=N)
    assert got == [hf_greedy[r] for r in rows]


@pytest.mark.parametrize("scope", ["sequence", "token"])
def test_jsd_with_the_base_as_reference(vllm_mod, hf_mod, scope):
    options = dict(divergence="jsd", scope=scope, max_new_tokens=10)
    w = (0.5, 0.3, 0.2)
    assert vllm_mod.generate(PROMPTS[1], w, **options) == hf_mod.generate(PROMPTS[1], w, **options)


def test_stop_strings_cut_the_text_like_the_transformers_engine(vllm_mod, hf_mod, hf_greedy):
    full = hf_greedy[PROMPTS[0], WEIGHTINGS[1]]
    stop = full.split()[3]  # a word from the middle of the greedy answer
    deltas = list(vllm_mod.stream(PROMPTS[0], WEIGHTINGS[1], max_new_tokens=N, stop=[stop]))
    result = deltas[-1].result
    assert result.finish_reason == "stop" and result.text == full[:full.index(stop)]
    assert "".join(d.text for d in deltas) == result.text  # streamed pieces add up; the stop never shows
    assert hf_mod.generate(PROMPTS[0], WEIGHTINGS[1], max_new_tokens=N, stop=[stop]) == result.text


def test_eos_ends_a_row_unless_ignored(vllm_mod, hf_mod):
    prompt, w = "Say only the word yes.", WEIGHTINGS[1]
    done = vllm_mod.generate([prompt], w, max_new_tokens=24, return_diagnostics=False)[0]
    [hf] = hf_mod.generate([prompt], w, max_new_tokens=24, return_diagnostics=True)
    assert hf.finish_reason == "stop" and len(hf.token_ids) < 24, "the prompt must make the model stop early"
    assert done == hf.text
    results = [d.result for d in vllm_mod.stream([prompt], w, max_new_tokens=24) if d.result]
    assert results[0].finish_reason == "stop" and results[0].token_ids == hf.token_ids
    past = [d.result for d in vllm_mod.stream([prompt], w, max_new_tokens=len(hf.token_ids) + 3, ignore_eos=True)
            if d.result][0]
    assert past.finish_reason == "length" and len(past.token_ids) >= len(hf.token_ids) + 2  # EOS not in ids


def test_seeded_sampling_is_reproducible_and_each_row_has_its_own_stream(vllm_mod):
    options = dict(strategy="sample", temperature=0.9, top_p=0.95, max_new_tokens=10)
    rows = [PROMPTS[0], PROMPTS[1]]
    first = vllm_mod.generate(rows, WEIGHTINGS[1], seed=7, **options)
    assert vllm_mod.generate(rows, WEIGHTINGS[1], seed=7, **options) == first
    # prompt i draws from seed + i, whatever else is in the call
    assert vllm_mod.generate(rows[1], WEIGHTINGS[1], seed=8, **options) == first[1]
    others = [vllm_mod.generate(rows[0], WEIGHTINGS[1], seed=s, **options) for s in (100, 200, 300)]
    assert any(o != first[0] for o in others)


def first_token_logprobs(policy, prompt: str) -> torch.Tensor:
    """log pi(first token | prompt) from the transformers model (the independent reference)."""
    ids = torch.tensor([policy.encode(prompt)])
    with torch.no_grad():  # PEFT's mixed-adapter batch API, with a batch of one
        logits = policy.model(input_ids=ids, adapter_names=[policy.peft_adapter]).logits[0, -1, : policy.base.vocab_size]
    return torch.log_softmax(logits.float(), dim=-1)


def test_first_token_draws_follow_the_combined_distribution(vllm_mod, bundled_adapter_policies):
    """n seeded first-token draws (row j draws from seed + j) against softmax(combine_logprobs(...) / T)
    over the top-k tokens, with the log-probs from the transformers models.

    1. Replay: moddecode's own sampler, given the same scores and row streams, draws the same tokens
       (at most one differs: vLLM's and torch's float32 logits differ in the last bits, which moves a
       draw only if it lands within ~1e-6 of a boundary). Any other distribution, temperature,
       top-k or seeding fails this by far.
    2. Chi-square goodness of fit of the counts, p > 1e-4 (deterministic: the seeds are fixed)."""
    policies, _ = bundled_adapter_policies
    prompt, w, temperature, k, n, seed = "Name a colour.", (0.2, 0.5, 0.3), 1.6, 5, 100, 1234
    options = dict(strategy="sample", temperature=temperature, top_k=k, seed=seed, max_new_tokens=1, ignore_eos=True)
    results = {d.index: d.result for d in vllm_mod.stream([prompt] * n, w, **options) if d.result}
    draws = [results[j].token_ids[0] for j in range(n)]
    lp = torch.stack([first_token_logprobs(p, prompt) for p in policies])
    scores = combine_logprobs(lp.double(), list(w))
    config = DecodingConfig(**{k_: v for k_, v in options.items() if k_ not in ("max_new_tokens", "ignore_eos")})
    replay = [int(sample_tokens(scores[None], config, [torch.Generator().manual_seed(seed + j)])) for j in range(n)]
    assert sum(a != b for a, b in zip(draws, replay)) <= 1, (draws, replay)
    top = torch.topk(scores / temperature, k)
    assert set(draws) <= set(top.indices.tolist()), "a draw fell outside the top-k tokens"
    expected = torch.softmax(top.values, dim=-1) * n
    counts = torch.tensor([draws.count(int(t)) for t in top.indices], dtype=torch.float64)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    p_value = float(torch.special.gammaincc(torch.tensor((k - 1) / 2), torch.tensor(chi2 / 2)))
    assert p_value > 1e-4, (counts.tolist(), expected.tolist(), chi2)


def test_what_vllm_cannot_do_fails_clearly(vllm_mod):
    with pytest.raises(ConfigError, match="transformers engine"):
        vllm_mod.generate(PROMPTS[0], WEIGHTINGS[0], strategy="beam", max_new_tokens=4)
    with pytest.raises(ConfigError, match="diagnostics.*transformers engine"):
        vllm_mod.generate(PROMPTS[0], WEIGHTINGS[0], max_new_tokens=4, return_diagnostics=True)
    with pytest.raises(ConfigError, match="user-defined divergence"):
        vllm_mod.generate(PROMPTS[0], WEIGHTINGS[0], max_new_tokens=4,
                          divergence=(lambda u: 1 + torch.log(u), lambda v: torch.exp(v - 1)))
    with pytest.raises(ConfigError, match="log-probs.*transformers engine"):
        vllm_mod.generate(PROMPTS[0], WEIGHTINGS[0], max_new_tokens=4, logprobs=2)
    assert vllm_mod.engine.max_model_len == 512  # engine_options reached vLLM
    with pytest.raises(ConfigError, match="max_model_len 512"):
        vllm_mod.generate("word " * 600, WEIGHTINGS[0], max_new_tokens=4)
