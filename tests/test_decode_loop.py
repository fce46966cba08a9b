"""Continuous batching: rows that join a running decode, leave it early, or differ in every option
decode exactly as they would alone."""

from __future__ import annotations

import pytest
import torch

from moddecode import MOD, DecodingConfig, Policy, get_divergence
from moddecode.decoding import RowSpec

PROMPTS = ["tell me about the sky", "what is a cat", "hello", "a much longer prompt about many different things"]


@pytest.fixture
def mod(base_a, base_b, adapters, cache):
    policies = [
        Policy.load(str(base_a), adapter=adapters[0], name="lora0", cache=cache),
        Policy.load(str(base_a), system_prompt="please be funny", name="funny", cache=cache),
        Policy.load(str(base_b), name="other", cache=cache),
    ]
    return MOD(policies, reference=Policy.load(str(base_a), name="ref", cache=cache))


# (weights, config overrides): rows that cannot share one decode call today
ROWS = [
    ([0.2, 0.5, 0.3], dict()),
    ([1.0, 0.0, 0.0], dict(max_new_tokens=3)),
    ([0.6, 0.6, -0.2], dict(divergence="forward_kl", scope="token")),
    ([0.3, 0.3, 0.3], dict(divergence="jsd", stop=["e"])),
    ([0.5, 0.2, 0.3], dict(strategy="sample", seed=7, temperature=0.8, top_k=20)),
    ([0.9, 0.3, 0.1], dict(divergence="alpha:0.3", ignore_eos=True)),
]


def spec(mod, i, prompt, weights, overrides, key):  # noqa: ARG001 - i documents the row
    config = DecodingConfig(max_new_tokens=10, divergence="reverse_kl").merged(**overrides)
    w = torch.tensor(weights, dtype=torch.float64)
    needs = get_divergence(config.divergence).needs_reference(float(w.sum()))
    return RowSpec(prompt, w, config, config.max_new_tokens, uses_reference=needs, index=0, key=key)


def solo(mod, prompt, weights, overrides):
    return mod.generate(prompt, weights, DecodingConfig(max_new_tokens=10).merged(**overrides), return_diagnostics=True)


def run_loop(loop, arrivals: dict[int, list[RowSpec]]) -> tuple[dict, int]:
    """Step the loop, submitting arrivals[k] before step k; returns each key's Generation."""
    results, step = {}, 0
    while loop.busy or any(k >= step for k in arrivals):
        loop.submit(arrivals.get(step, []))
        for event in loop.step():
            assert event.error is None, event.error
            if event.delta.result is not None:
                results[event.key] = event.delta.result
        step += 1
    return results, step


def test_rows_joining_mid_decode_equal_their_solo_results(mod):
    expected = {k: solo(mod, PROMPTS[k % 4], w, o) for k, (w, o) in enumerate(ROWS)}
    loop = mod.engine.loop()
    # two rows start, the others join at steps 1, 2 and 4 (some after earlier rows have finished)
    arrivals = {0: [0, 1], 1: [2], 2: [3, 4], 4: [5]}
    specs = {step: [spec(mod, k, PROMPTS[k % 4], *ROWS[k], key=k) for k in keys] for step, keys in arrivals.items()}
    results, steps = run_loop(loop, specs)
    assert set(results) == set(expected)
    for k, result in results.items():
        assert result.token_ids == expected[k].token_ids, k
        assert result.text == expected[k].text and result.finish_reason == expected[k].finish_reason
    assert steps < sum(len(r.token_ids) for r in expected.values())  # they shared steps
    assert not loop.busy and loop.live == []


def distinct_prefixes(rows: list[tuple[object, list[int]]]) -> int:
    """Sequence forwards a shared decode needs (brute force): after each step t, one per distinct
    (key, first t tokens) among the rows still decoding (a row's last token is never fed forward)."""
    longest = max(len(ids) for _, ids in rows)
    return sum(len({(key, tuple(ids[:t])) for key, ids in rows if len(ids) > t}) for t in range(1, longest))


def test_rows_of_one_prompt_share_its_sequence_until_their_tokens_part(mod):
    prompt, fixed = PROMPTS[3], dict(ignore_eos=True)
    # twins (rows 2 and 3) never part; a JSD row needs the reference, so it cannot share the others' sequence
    rows = [([1.0, 0.0, 0.0], fixed), ([0.8, 0.2, 0.0], fixed), ([0.5, 0.5, 0.0], fixed), ([0.5, 0.5, 0.0], fixed),
            ([0.0, 0.0, 1.0], fixed), ([0.2, 0.3, 0.5], dict(fixed, scope="token")),
            ([0.3, 0.3, 0.3], dict(fixed, divergence="jsd"))]
    expected = [solo(mod, prompt, w, o) for w, o in rows]
    loop = mod.engine.loop()
    specs = [spec(mod, k, prompt, w, o, key=k) for k, (w, o) in enumerate(rows)]
    results, _ = run_loop(loop, {0: specs})
    for k, (result, alone) in enumerate(zip((results[k] for k in range(len(rows))), expected)):
        assert result.token_ids == alone.token_ids and result.text == alone.text, k
    keyed = [(s.uses_reference, r.token_ids) for s, r in zip(specs, expected)]
    assert loop.sequences_stepped == distinct_prefixes(keyed)
    steps = max(len(r.token_ids) for r in expected) - 1
    assert steps * 2 < loop.sequences_stepped < steps * (len(rows) - 1)  # they forked, and shared


def test_samples_of_one_prompt_draw_the_same_whether_or_not_they_share_its_prefill(mod):
    prompt, weights = [{"role": "user", "content": PROMPTS[0]}], [0.2, 0.5, 0.3]
    options = dict(strategy="sample", seed=3, temperature=1.5, ignore_eos=True)

    def samples(arrivals):
        specs = [spec(mod, k, prompt, weights, options, key=k) for k in range(4)]
        for k, s in enumerate(specs):
            s.index = k  # the k-th of n samples: its own draws
        loop = mod.engine.loop()
        results, _ = run_loop(loop, {step: [specs[k] for k in keys] for step, keys in arrivals.items()})
        return [results[k].token_ids for k in range(4)], loop.sequences_stepped

    together, shared = samples({0: [0, 1, 2, 3]})
    apart, unshared = samples({0: [0], 1: [1], 2: [2], 3: [3]})
    assert together == apart and len({tuple(t) for t in together}) > 1
    assert shared == distinct_prefixes([(None, t) for t in together]) and unshared == sum(len(t) - 1 for t in apart)


def test_cancelled_rows_leave_at_once_and_others_are_unaffected(mod):
    expected = solo(mod, PROMPTS[0], *ROWS[0])
    loop = mod.engine.loop()
    cancelled = {"flag": False}
    other = spec(mod, 1, PROMPTS[3], [0.4, 0.4, 0.2], dict(max_new_tokens=10, ignore_eos=True), key="gone")
    other.is_cancelled = lambda: cancelled["flag"]
    loop.submit([spec(mod, 0, PROMPTS[0], *ROWS[0], key="kept"), other])
    events = loop.step()
    assert len(loop.live) + sum(e.delta.result is not None for e in events) == 2
    cancelled["flag"] = True
    events += loop.step()
    assert [row.spec.key for row in loop.live] in (["kept"], [])
    results, _ = run_loop(loop, {})
    results.update({e.key: e.delta.result for e in events if e.delta.result is not None})
    assert "gone" not in results and results["kept"].token_ids == expected.token_ids
    assert loop.live == [] and all(not g.slots for g in loop.rows.groups)  # no leaked KV rows


def test_an_infeasible_row_fails_alone(mod):
    loop = mod.engine.loop()
    bad = spec(mod, 0, PROMPTS[0], [-0.5, -0.5, 0.0], dict(divergence="forward_kl"), key="bad")
    good = spec(mod, 1, PROMPTS[1], *ROWS[0], key="good")
    loop.submit([bad, good])
    errors, results = {}, {}
    while loop.busy:
        for event in loop.step():
            if event.error is not None:
                errors[event.key] = event.error
            elif event.delta.result is not None:
                results[event.key] = event.delta.result
    assert set(errors) == {"bad"} and "forward_kl" in str(errors["bad"])
    assert results["good"].token_ids == solo(mod, PROMPTS[1], *ROWS[0]).token_ids


def test_padding_left_by_finished_rows_is_trimmed(mod):
    loop = mod.engine.loop()
    long_prompt = PROMPTS[3] * 3
    loop.submit([spec(mod, 0, long_prompt, [0.2, 0.5, 0.3], dict(max_new_tokens=2), key="long"),
                 spec(mod, 1, "hi", [0.2, 0.5, 0.3], dict(max_new_tokens=8, ignore_eos=True), key="short")])
    loop.step()
    widths = [g.attention_mask.shape[1] for g in loop.rows.groups if g.slots]
    loop.step()
    loop.step()  # "long" has finished: its columns are padding for every remaining row
    assert [row.spec.key for row in loop.live] == ["short"]
    for group in loop.rows.groups:
        if group.slots:
            assert bool(group.attention_mask[:, 0].any())  # no all-padding leading column remains
            assert group.attention_mask.shape[1] < max(widths)


def test_logprobs_are_the_combined_distribution(mod):
    from moddecode import combine_logprobs

    result = mod.generate(PROMPTS[0], [0.2, 0.5, 0.3], max_new_tokens=4, scope="token", ignore_eos=True,
                          return_diagnostics=True, logprobs=3)
    assert len(result.logprobs) == len(result.token_ids) == 4
    for entry, token in zip(result.logprobs, result.token_ids):
        assert entry.token_id == token and entry.top[0][0] == token  # greedy: the most likely token
        assert entry.logprob == pytest.approx(entry.top[0][2]) and entry.logprob <= 0
        assert [t[2] for t in entry.top] == sorted((t[2] for t in entry.top), reverse=True) and len(entry.top) == 3
    # the first token's distribution, recomputed from the members' own next-token log-probs
    rows = mod.engine.rows()
    lp = rows.add([PROMPTS[0]])[:3, 0].double()
    expected = torch.log_softmax(combine_logprobs(lp, [0.2, 0.5, 0.3]), -1)
    assert result.logprobs[0].logprob == pytest.approx(float(expected[result.token_ids[0]]), abs=1e-5)
    streamed = [p for d in mod.stream(PROMPTS[0], [0.2, 0.5, 0.3], max_new_tokens=4, scope="token",
                                      ignore_eos=True, logprobs=0) for p in d.logprobs]
    assert [p.token_id for p in streamed] == result.token_ids and all(p.top == [] for p in streamed)


def test_engines_are_chosen_by_name(base_a, cache):
    from moddecode import ConfigError, UnknownNameError
    from moddecode.engines import get_engine_class

    policy = Policy.load(str(base_a), name="a", cache=cache)
    with pytest.raises(UnknownNameError, match="Did you mean 'vllm'"):
        MOD([policy], engine="vlm")
    with pytest.raises(ConfigError, match="engine_options"):
        MOD([policy], engine_options={"tensor_parallel_size": 2})
    try:
        get_engine_class("vllm")
    except ConfigError as exc:  # this environment has no vLLM: the error says how to get it
        assert "setup.sh --vllm" in str(exc)
