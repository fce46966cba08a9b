"""Client side of a MOD group on vLLM: checks that its sibling requests agree token by token, and
turns the agreed tokens into streamed text exactly as the transformers engine does.

Pure Python (no vLLM import). A position's text is emitted only once every sibling has returned that
position and all agree; a group whose siblings disagree or fall out of step fails with an error
naming the prompt, and emits nothing from that position on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ...decoding import Generation, TextDelta
from ...decoding.text import TextTracker
from ...errors import InfeasibleWeightsError, ModDecodeError
from .protocol import Failure, read_failure

# vLLM finish reasons our own requests can legitimately end with; anything else ("abort" we did not
# ask for, "error", ...) fails the group.
EXPECTED_FINISH = {"stop", "length"}


class LockstepError(ModDecodeError, RuntimeError):
    """A MOD row's sibling requests on vLLM did not advance together, so no combined token exists."""

    def __init__(self, message: str, index: int, reason: Failure | None = None, position: int | None = None):
        super().__init__(message)
        self.index = index  # the prompt
        self.reason = reason
        self.position = position  # tokens of it that were agreed (its emitted text covers at most these)


@dataclass
class SiblingGroup:
    """One prompt's sibling requests (index = member) and the text agreed so far."""

    index: int  # prompt index in the decode call
    request_ids: list[str]
    tracker: TextTracker
    limit: int  # max new tokens for this prompt
    eos_ids: set[int]
    weights: list[float]
    divergence: str
    kv_blocks: int = 0  # KV-cache blocks reserved for the siblings at full length (engine bookkeeping)
    tokens: list[list[int]] = field(default_factory=list)
    finish: list[str | None] = field(default_factory=list)
    position: int = 0  # agreed tokens consumed
    result: Generation | None = None

    def __post_init__(self) -> None:
        self.tokens = [[] for _ in self.request_ids]
        self.finish = [None for _ in self.request_ids]

    @property
    def done(self) -> bool:
        return self.result is not None

    def unfinished_requests(self) -> list[str]:
        return [rid for rid, f in zip(self.request_ids, self.finish) if f is None]

    def receive(self, member: int, new_tokens: list[int], finish_reason: str | None) -> None:
        self.tokens[member].extend(new_tokens)
        if finish_reason is not None:
            self.finish[member] = finish_reason

    def advance(self, settled: bool = True) -> Iterator[TextDelta]:
        """Consume the positions every sibling has returned; yields text, sets `result` when finished.

        Call after each engine step. Raises LockstepError / InfeasibleWeightsError for a failed group.
        settled=False: the siblings' outputs may not all have arrived yet (vLLM's async engine hands
        each request its outputs separately), so unequal lengths are not yet a failure; they are once
        every sibling has finished.
        """
        lengths = [len(t) for t in self.tokens]
        common = min(lengths)
        for p in range(self.position, common):
            column = [t[p] for t in self.tokens]
            if len(set(column)) > 1:
                self._fail(read_failure(column) or Failure.LOCKSTEP, p)
            token = column[0]
            self.position = p + 1
            is_eos = token in self.eos_ids
            if not is_eos:
                self.tracker.push(token)
            done = is_eos or self.tracker.stopped or self.position == self.limit
            piece = self.tracker.delta(final=done)
            if done:
                reason = "stop" if (is_eos or self.tracker.stopped) else "length"
                self.result = Generation(self.tracker.text, self.tracker.token_ids, reason)
                yield TextDelta(self.index, piece, self.result)
                return
            if piece:
                yield TextDelta(self.index, piece)
        # Siblings are scheduled together, so after any engine step they hold equally many tokens.
        settled = settled or all(f is not None for f in self.finish)
        if settled and max(lengths) != common:
            self._fail(Failure.LOCKSTEP, common)
        unexpected = [f for f in self.finish if f is not None and f not in EXPECTED_FINISH]
        if unexpected or (settled and any(f is not None for f in self.finish) and not self.done):
            raise LockstepError(f"prompt {self.index}: vLLM ended its MOD sibling requests early "
                                f"(finish reasons {self.finish}) after {self.position} tokens; no text "
                                "past that point was emitted. Check the vLLM log for the cause.", self.index)

    def _fail(self, reason: Failure, position: int):
        where = f"prompt {self.index} (at token {position})"
        if reason == Failure.INFEASIBLE:
            raise InfeasibleWeightsError(
                f"{where}: no token is feasible under divergence {self.divergence!r} with weights "
                f"{self.weights}: (grad f)^-1 is undefined for every token. Use non-negative weights"
                + (", or reverse_kl, whose domain allows any weights." if self.divergence != "reverse_kl" else "."))
        causes = {
            Failure.LOCKSTEP: "its sibling requests fell out of lockstep on vLLM (one was preempted or scheduled "
                              "apart from the others), so the next token could not be computed from all policies",
            Failure.STATE_LOST: "its sibling requests resumed after a preemption, but the MOD state of the group "
                                "had been evicted",
            Failure.INTERNAL: "the MOD logits processor failed on this group (its traceback is in the vLLM log)",
        }
        raise LockstepError(
            f"{where}: {causes[reason]}; no text from that point on was emitted. Give vLLM more KV-cache "
            "memory (engine_options kv_cache_memory_bytes or gpu_memory_utilization), or send fewer prompts "
            "per call.", self.index, reason, position)
