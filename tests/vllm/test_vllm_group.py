"""A group's token choice inside vLLM (group.py) equals moddecode's own math, step by step (no vLLM needed).

Reference: combine_logprobs on the (cumulative, for sequence scope) member log-probs, then argmax or
moddecode's sample_tokens with the row's own stream (seed + prompt index)."""

from __future__ import annotations

import torch

from moddecode import combine_logprobs
from moddecode.decoding import DecodingConfig
from moddecode.decoding.sampling import sample_tokens
from moddecode.engines.vllm.group import GroupState, choose_tokens
from moddecode.engines.vllm.protocol import Failure, GroupTag

V = 50


def make_tag(group="g", weights=(0.2, 0.5, 0.3), reference=False, **kw) -> GroupTag:
    m = len(weights)
    rows = m + int(reference)
    base = dict(group=group, member=0, members=rows if rows > 1 else 2, num_policies=m, reference=reference,
                weights=tuple(weights), divergence="reverse_kl", scope="sequence", strategy="greedy", vocab_size=V)
    return GroupTag(**{**base, **kw})


def random_logprobs(generator, rows: int) -> torch.Tensor:
    return torch.log_softmax(torch.randn(rows, V, generator=generator) * 3, dim=-1)


def reference_token(tag: GroupTag, lp: torch.Tensor, cumulative: torch.Tensor, generator=None) -> int:
    level = lp.double() + (cumulative.unsqueeze(-1) if tag.scope == "sequence" else 0)
    m = tag.num_policies
    scores = combine_logprobs(level[:m].unsqueeze(1), torch.tensor(tag.weights).unsqueeze(1), tag.divergence,
                              ref_logprobs=level[m].unsqueeze(0) if tag.reference else None)
    if tag.strategy == "greedy":
        return int(scores.argmax(-1))
    config = DecodingConfig(strategy="sample", temperature=tag.temperature, top_k=tag.top_k, top_p=tag.top_p)
    return int(sample_tokens(scores, config, [generator]))


def run_steps(tags: list[GroupTag], steps: int, seed: int):
    """Decode several groups together for `steps` steps; compare every choice with the reference."""
    g = torch.Generator().manual_seed(seed)
    states = [GroupState(t) for t in tags]
    for s in states:
        s.start(torch.device("cpu"))
    ref_cum = [torch.zeros(s.math_rows, dtype=torch.float64) for s in states]
    ref_gen = [torch.Generator().manual_seed(t.seed) if t.strategy == "sample" else None for t in tags]
    for step in range(steps):
        lps = [random_logprobs(g, s.math_rows) for s in states]
        picks = choose_tokens(states, lps)
        for i, (tag, lp, pick) in enumerate(zip(tags, lps, picks)):
            assert pick == reference_token(tag, lp, ref_cum[i], ref_gen[i]), (tag, step)
            ref_cum[i] = ref_cum[i] + lp[:, pick].double()
        for s in states:
            assert s.sync([step + 1] * s.tag.members) is None  # every sibling got the token
    return states, ref_cum


def test_greedy_groups_with_different_settings_in_one_batch_match_the_reference():
    tags = [make_tag("a"), make_tag("b", weights=(1.0, 0.0, 0.0)), make_tag("c", scope="token"),
            make_tag("d", weights=(0.5, 0.3, 0.2), reference=True, divergence="jsd"),
            make_tag("e", weights=(0.7, 0.6), reference=True, divergence="reverse_kl"),
            make_tag("f", weights=(0.4, 0.6), divergence="alpha:0.5", scope="token"),
            make_tag("g", weights=(0.9, 0.1), divergence="forward_kl")]
    states, ref_cum = run_steps(tags, steps=6, seed=11)
    for s, cum in zip(states, ref_cum):  # the sequence-scope prefix log-probs are what the reference summed
        if s.tag.scope == "sequence":
            assert torch.equal(s.cumulative, cum)
        assert s.position == 6


def test_sampling_draws_from_each_rows_own_seeded_stream():
    tags = [make_tag("a", strategy="sample", seed=100, temperature=0.8, top_k=10),
            make_tag("b", strategy="sample", seed=101, top_p=0.7, scope="token"),
            make_tag("c", strategy="sample", seed=102, temperature=1.5, reference=True, divergence="jsd",
                     weights=(0.3, 0.3, 0.4))]
    run_steps(tags, steps=8, seed=12)


def test_an_infeasible_group_fails_alone():
    ok, bad = make_tag("ok", divergence="forward_kl", weights=(0.5, 0.5)), \
        make_tag("bad", divergence="forward_kl", weights=(-1.0, 0.0))
    states = [GroupState(ok), GroupState(bad)]
    for s in states:
        s.start(torch.device("cpu"))
    lps = [random_logprobs(torch.Generator().manual_seed(3), 2) for _ in states]
    picks = choose_tokens(states, lps)
    assert picks[1] == Failure.INFEASIBLE
    assert picks[0] == reference_token(ok, lps[0], torch.zeros(2, dtype=torch.float64))


def test_a_token_discarded_by_vllm_is_not_counted_and_its_draw_is_undone():
    tag = make_tag(strategy="sample", seed=7, temperature=2.0)
    state = GroupState(tag)
    state.start(torch.device("cpu"))
    lp = random_logprobs(torch.Generator().manual_seed(4), 3)
    first = choose_tokens([state], [lp])[0]
    assert state.sync([0, 0, 0]) is None  # vLLM dropped the token (a partial prefill): still position 0
    assert state.position == 0 and torch.equal(state.cumulative, torch.zeros(3, dtype=torch.float64))
    assert choose_tokens([state], [lp])[0] == first  # the same draw again, not the stream's next one
    assert state.sync([1, 1, 1]) is None and state.position == 1
    assert torch.equal(state.cumulative, lp[:, first].double())


def test_siblings_at_different_lengths_are_out_of_lockstep():
    state = GroupState(make_tag())
    state.start(torch.device("cpu"))
    assert state.sync([0, 0, 1]) == Failure.LOCKSTEP
    state = GroupState(make_tag())
    state.start(torch.device("cpu"))
    choose_tokens([state], [random_logprobs(torch.Generator().manual_seed(5), 3)])
    assert state.sync([2, 2, 2]) == Failure.LOCKSTEP  # two tokens appeared where one was chosen
