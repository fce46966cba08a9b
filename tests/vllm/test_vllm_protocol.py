"""The pure parts of the vLLM engine (no vLLM needed): sibling tags, the failure signal, and the client's
check that siblings agree before any text is emitted."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from moddecode.decoding.text import TextTracker
from moddecode.engines.vllm.protocol import EXTRA_ARGS_KEY, Failure, GroupTag, failure_token, read_failure
from moddecode.engines.vllm.siblings import LockstepError, SiblingGroup
from moddecode.errors import ConfigError, InfeasibleWeightsError


def tag(**kw) -> GroupTag:
    base = dict(group="g0", member=0, members=3, num_policies=3, reference=False, weights=(0.2, 0.5, 0.3),
                divergence="reverse_kl", scope="sequence", strategy="greedy", vocab_size=100)
    return GroupTag(**{**base, **kw})


def test_tag_round_trips_through_extra_args():
    t = tag(strategy="sample", seed=5, temperature=0.7, top_k=3, top_p=0.9)
    assert GroupTag.from_extra_args(t.to_extra_args()) == t
    assert GroupTag.from_extra_args(None) is None and GroupTag.from_extra_args({"other": 1}) is None


@pytest.mark.parametrize("change, field", [
    (dict(members=2), "members"), (dict(member=3), "member"), (dict(weights=(1.0, 0.0)), "weight"),
    (dict(weights=(float("nan"), 0, 0)), "finite"), (dict(divergence="jsdd"), "jsd"),
    (dict(strategy="beam"), "transformers engine"), (dict(scope="tokens"), "scope"),
    (dict(temperature=0), "temperature"), (dict(top_p=1.5), "top_p"), (dict(vocab_size=1), "vocab_size"),
    (dict(seed="1"), "seed"), (dict(reference=True, members=3), "members"),
])
def test_bad_tags_are_rejected_with_the_field_named(change, field):
    raw = tag().to_extra_args()
    raw[EXTRA_ARGS_KEY].update({k: list(v) if isinstance(v, tuple) else v for k, v in change.items()})
    with pytest.raises(ValueError, match=field):
        GroupTag.from_extra_args(raw)


def test_unknown_or_missing_tag_fields_are_named():
    raw = tag().to_extra_args()
    raw[EXTRA_ARGS_KEY]["wieghts"] = raw[EXTRA_ARGS_KEY].pop("weights")
    with pytest.raises(ValueError, match=r"unknown fields \['wieghts'\], missing fields \['weights'\]"):
        GroupTag.from_extra_args(raw)


def test_failure_tokens_disagree_and_decode_back():
    for members in (2, 3, 5):
        for reason in Failure:
            column = [failure_token(reason, k, members) for k in range(members)]
            assert len(set(column)) == members  # every member differs from every other
            assert read_failure(column) == reason
    assert read_failure([7, 7, 7]) is None  # agreement is not a failure
    assert read_failure([3, 5, 4]) is None  # a disagreement without the pattern: unknown cause
    assert read_failure([6]) is None


@pytest.fixture(scope="module")
def tokenizer(base_a):
    return AutoTokenizer.from_pretrained(base_a)


def group(tokenizer, members=3, limit=10, stop=(), eos=frozenset({0})) -> SiblingGroup:
    return SiblingGroup(4, [f"r{k}" for k in range(members)], TextTracker(tokenizer, tuple(stop)), limit,
                        set(eos), [0.5, 0.5, 0.0], "jsd")


def feed(g: SiblingGroup, columns: list[list[int]], finish=None):
    for k in range(len(g.request_ids)):
        g.receive(k, [c[k] for c in columns], finish)
    return list(g.advance())


IDS = [40, 41, 42, 43]  # ordinary tokens of the tiny test tokenizer


def test_agreeing_siblings_stream_the_same_text_as_one_tracker(tokenizer):
    ids = IDS
    g = group(tokenizer, limit=len(ids))
    deltas = []
    for i in ids[:-1]:
        deltas += feed(g, [[i, i, i]])
    assert not g.done
    deltas += feed(g, [[ids[-1]] * 3], finish="length")
    assert g.done and g.result.finish_reason == "length" and g.result.token_ids == ids
    assert "".join(d.text for d in deltas) == g.result.text == tokenizer.decode(ids, skip_special_tokens=True)
    assert deltas[-1].result is g.result and all(d.index == 4 for d in deltas)


def test_eos_and_stop_strings_finish_like_the_transformers_engine(tokenizer):
    ids = IDS
    g = group(tokenizer, eos={ids[1]})
    feed(g, [[i] * 3 for i in ids[:2]], finish="stop")
    assert g.result.finish_reason == "stop" and g.result.token_ids == ids[:1]  # EOS is not part of the text
    stop = tokenizer.decode([ids[2]]).strip()
    g = group(tokenizer, stop=[stop])
    out = feed(g, [[i] * 3 for i in ids])
    assert g.result.finish_reason == "stop" and g.position == 3  # finished at the stop, not the limit
    assert stop not in "".join(d.text for d in out) and "".join(d.text for d in out) == g.result.text


def test_a_disagreement_fails_before_its_position_is_emitted(tokenizer):
    ids = IDS
    g = group(tokenizer)
    emitted = feed(g, [[ids[0]] * 3])
    with pytest.raises(LockstepError, match="prompt 4 .at token 1.*lockstep") as info:
        feed(g, [[ids[1], ids[1], ids[2]]])
    assert info.value.index == 4 and info.value.position == g.position == 1 and not g.done
    assert "".join(d.text for d in emitted) in tokenizer.decode(ids[:1])


def test_unequal_lengths_after_a_step_fail_at_once(tokenizer):
    g = group(tokenizer)
    g.receive(0, [5], None)
    g.receive(1, [5], None)  # member 2 got nothing this step: it was preempted
    with pytest.raises(LockstepError, match="preempted") as info:
        list(g.advance())
    assert info.value.reason == Failure.LOCKSTEP


def test_the_failure_pattern_names_its_cause(tokenizer):
    g = group(tokenizer)
    with pytest.raises(InfeasibleWeightsError, match=r"divergence 'jsd' with weights \[0.5, 0.5, 0.0\]"):
        feed(g, [[failure_token(Failure.INFEASIBLE, k, 3) for k in range(3)]])
    g = group(tokenizer)
    with pytest.raises(LockstepError, match="evicted") as info:
        feed(g, [[failure_token(Failure.STATE_LOST, k, 3) for k in range(3)]])
    assert info.value.reason == Failure.STATE_LOST
    assert issubclass(LockstepError, RuntimeError) and not issubclass(LockstepError, ConfigError)


def test_a_sibling_ended_by_vllm_for_another_reason_fails(tokenizer):
    g = group(tokenizer)
    g.receive(0, [], "abort")
    with pytest.raises(LockstepError, match="abort"):
        list(g.advance())
