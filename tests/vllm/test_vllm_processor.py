"""The logits processor on synthetic batches: it follows vLLM's batch bookkeeping (removed, added, moved
rows), forces every sibling to the group's combined token, and forces failed groups to disagree."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_vllm

from moddecode import combine_logprobs
from moddecode.engines.vllm.protocol import Failure, GroupTag, failure_token

pytestmark = needs_vllm
V = 40


@pytest.fixture
def vllm_types():
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    from moddecode.engines.vllm.processor import ModLogitsProcessor

    return SamplingParams, BatchUpdate, MoveDirectionality, ModLogitsProcessor


def params(SamplingParams, group="g", member=0, weights=(0.2, 0.5, 0.3), **kw):
    tag = dict(group=group, member=member, members=len(weights), num_policies=len(weights), reference=False,
               weights=tuple(weights), divergence="reverse_kl", scope="token", strategy="greedy", vocab_size=V)
    tag.update(kw)
    return SamplingParams(temperature=0.0, extra_args=GroupTag(**tag).to_extra_args())


def expected(logits: torch.Tensor, rows: list[int], weights) -> int:
    lp = torch.log_softmax(logits[rows, :V].float(), dim=-1)
    return int(combine_logprobs(lp, list(weights)).argmax())


def forced_to(out: torch.Tensor, row: int) -> int | None:
    """The one token a row may take (0 logit, -inf elsewhere), or None if the row was left alone."""
    finite = torch.isfinite(out[row]).nonzero().flatten().tolist()
    return finite[0] if len(finite) == 1 and out[row, finite[0]] == 0 else None


def test_siblings_are_forced_to_the_combined_token_and_other_rows_are_untouched(vllm_types):
    SamplingParams, BatchUpdate, Move, Processor = vllm_types
    proc = Processor(None, torch.device("cpu"), False)
    outputs = {m: [] for m in range(3)}  # each member's output list (vLLM hands the processor a reference)
    # batch rows: 0 = an ordinary request, 1..3 = members 2, 0, 1 of a group (any order)
    row_of = {2: 1, 0: 2, 1: 3}
    added = [(0, SamplingParams(temperature=0.0), [1], [])]
    added += [(r, params(SamplingParams, member=m), [1], outputs[m]) for m, r in row_of.items()]
    proc.update_state(BatchUpdate(batch_size=4, removed=[], added=added, moved=[]))
    gen = torch.Generator().manual_seed(0)
    plain_row, batch = 0, 4
    for step in range(3):
        logits = torch.randn(batch, V + 8, generator=gen) * 4  # 8 padded logits past the tokenizer
        want = expected(logits, [row_of[m] for m in range(3)], (0.2, 0.5, 0.3))
        out = proc.apply(logits.clone())
        assert [forced_to(out, row_of[m]) for m in range(3)] == [want] * 3
        if plain_row is not None:
            assert torch.equal(out[plain_row], logits[plain_row])
        for o in outputs.values():
            o.append(want)  # vLLM appends the sampled token to each request's output list
        if step == 0:  # vLLM swaps two rows...
            proc.update_state(BatchUpdate(batch_size=4, removed=[], added=[], moved=[(1, 3, Move.SWAP)]))
            row_of = {2: 3, 0: 2, 1: 1}
        if step == 1:  # ...and after a request finishes moves its last row into the hole
            proc.update_state(BatchUpdate(batch_size=3, removed=[0], added=[], moved=[(3, 0, Move.UNIDIRECTIONAL)]))
            row_of, plain_row, batch = {2: 0, 0: 2, 1: 1}, None, 3


def test_a_missing_sibling_fails_the_group_with_disagreeing_tokens(vllm_types):
    SamplingParams, BatchUpdate, _, Processor = vllm_types
    proc = Processor(None, torch.device("cpu"), False)
    outs = [[], [], []]
    proc.update_state(BatchUpdate(3, [], [(k, params(SamplingParams, member=k), [1], outs[k]) for k in range(3)], []))
    out = proc.apply(torch.randn(3, V))
    token = forced_to(out, 0)
    for o in outs:
        o.append(token)
    proc.update_state(BatchUpdate(2, [2], [], []))  # member 2 preempted
    out = proc.apply(torch.randn(2, V))
    assert [forced_to(out, r) for r in (0, 1)] == [failure_token(Failure.LOCKSTEP, k, 3) for k in (0, 1)]
    # when it comes back it is failed too (its first token differs from the others' at that position)
    outs[0].append(forced_to(out, 0))
    outs[1].append(forced_to(out, 1))
    proc.update_state(BatchUpdate(3, [], [(2, params(SamplingParams, member=2), [1], outs[2])], []))
    out = proc.apply(torch.randn(3, V))
    assert forced_to(out, 2) == failure_token(Failure.LOCKSTEP, 2, 3)


def test_a_group_preempted_whole_resumes_with_its_state(vllm_types):
    SamplingParams, BatchUpdate, _, Processor = vllm_types
    proc = Processor(None, torch.device("cpu"), False)
    outs = [[], []]
    make = lambda k: params(SamplingParams, member=k, weights=(0.6, 0.4), scope="sequence")  # noqa: E731
    proc.update_state(BatchUpdate(2, [], [(k, make(k), [1], outs[k]) for k in range(2)], []))
    gen = torch.Generator().manual_seed(1)
    cumulative = torch.zeros(2, dtype=torch.float64)
    row_of = [0, 1]  # member -> batch row
    for step in range(4):
        logits = torch.randn(2, V, generator=gen) * 3
        lp = torch.log_softmax(logits[row_of], dim=-1).double()
        want = int(combine_logprobs(cumulative.unsqueeze(-1) + lp, [0.6, 0.4]).argmax())
        out = proc.apply(logits.clone())
        assert forced_to(out, 0) == forced_to(out, 1) == want
        cumulative = cumulative + lp[:, want]
        for o in outs:
            o.append(want)
        if step == 1:  # both preempted, then resumed in swapped slots
            proc.update_state(BatchUpdate(0, [0, 1], [], []))
            proc.update_state(BatchUpdate(2, [], [(1, make(0), [1], outs[0]), (0, make(1), [1], outs[1])], []))
            row_of = [1, 0]


def test_witness_row_follows_without_entering_the_math(vllm_types):
    SamplingParams, BatchUpdate, _, Processor = vllm_types
    proc = Processor(None, torch.device("cpu"), False)
    make = lambda k: params(SamplingParams, member=k, weights=(1.0,), members=2)  # noqa: E731
    proc.update_state(BatchUpdate(2, [], [(k, make(k), [1], []) for k in range(2)], []))
    logits = torch.randn(2, V)
    logits[1] = -logits[1]  # whatever the witness row says
    out = proc.apply(logits.clone())
    assert forced_to(out, 0) == forced_to(out, 1) == int(logits[0].argmax())


def test_infeasible_weights_fail_only_that_group(vllm_types):
    SamplingParams, BatchUpdate, _, Processor = vllm_types
    proc = Processor(None, torch.device("cpu"), False)
    bad = lambda k: params(SamplingParams, "bad", k, weights=(-1.0, 0.0), divergence="forward_kl")  # noqa: E731
    good = lambda k: params(SamplingParams, "good", k, weights=(0.5, 0.5), divergence="forward_kl")  # noqa: E731
    proc.update_state(BatchUpdate(4, [], [(0, bad(0), [1], []), (1, good(0), [1], []), (2, bad(1), [1], []),
                                          (3, good(1), [1], [])], []))
    logits = torch.randn(4, V)
    out = proc.apply(logits.clone())
    assert [forced_to(out, r) for r in (0, 2)] == [failure_token(Failure.INFEASIBLE, k, 2) for k in (0, 1)]
    lp = torch.log_softmax(logits[[1, 3]], dim=-1)
    assert forced_to(out, 1) == forced_to(out, 3) == int(combine_logprobs(lp, [0.5, 0.5], "forward_kl").argmax())


def test_validate_params_rejects_bad_tags_and_sampling_siblings(vllm_types):
    SamplingParams, _, _, Processor = vllm_types
    Processor.validate_params(SamplingParams())  # not ours: fine
    Processor.validate_params(params(SamplingParams))
    with pytest.raises(ValueError, match="divergence"):
        Processor.validate_params(params(SamplingParams, divergence="kl"))
    p = params(SamplingParams)
    p.temperature = 0.7
    with pytest.raises(ValueError, match="temperature=0"):
        Processor.validate_params(p)
    assert not Processor(None, torch.device("cpu"), False).is_argmax_invariant()
