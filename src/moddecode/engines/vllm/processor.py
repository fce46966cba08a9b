"""`ModLogitsProcessor`: MOD as a vLLM v1 logits processor.

Each MOD row runs as sibling requests (one per policy, plus the reference when the math needs it),
tagged with a `GroupTag` in `SamplingParams.extra_args`. Every step this processor gathers each
group's rows, normalises them, combines them with `combine_logprobs`, picks one token (greedy, or
sampled from the group's own seeded stream) and forces every sibling to it: all its other logits
become -inf, so vLLM's greedy sampler can only take that token.

Siblings must advance in lockstep. A group with a sibling missing from the step (not yet scheduled,
preempted) or at another output length gets no combined token: it is failed and its rows are forced
to disagree (see protocol.py), so the client drops it with a clear error instead of emitting text.

Load it by name, so engine-core and worker processes can import it:
`LLM(..., logits_processors=[PROCESSOR_NAME])`.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from .group import GroupState, choose_tokens
from .protocol import PROCESSOR_NAME, Failure, GroupTag, failure_token  # noqa: F401 (re-exported)

# Groups whose rows all left the batch (finished, aborted, or preempted whole) keep their state this
# long, so a group preempted together resumes where it was; the oldest are forgotten first.
MAX_ABSENT_GROUPS = 1024
logger = logging.getLogger(__name__)


@dataclass
class _Row:
    tag: GroupTag
    output_ids: list[int]  # vLLM's live list of the request's generated tokens


class ModLogitsProcessor(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.rows: dict[int, _Row] = {}  # persistent-batch index -> MOD sibling there
        self.groups: dict[str, GroupState] = {}  # groups with at least one row in the batch
        self.absent: OrderedDict[str, GroupState] = OrderedDict()

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        tag = GroupTag.from_extra_args(sampling_params.extra_args)  # ValueError: vLLM answers 400
        if tag is not None and sampling_params.temperature != 0:
            raise ValueError("MOD sibling requests must use temperature=0: the processor forces one token "
                             "and samples itself with the row's own settings (extra_args)")

    def is_argmax_invariant(self) -> bool:
        return False  # it decides the token, greedy requests included

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        # vLLM's documented order: removed, then added, then moved.
        for index in batch_update.removed:
            self._forget_row(index)
        for index, params, _prompt_ids, output_ids in batch_update.added:
            self._forget_row(index)  # an added request may take over an occupied index
            tag = GroupTag.from_extra_args(params.extra_args)
            if tag is not None:
                self.rows[index] = _Row(tag, output_ids)
                if tag.group not in self.groups:
                    self.groups[tag.group] = self.absent.pop(tag.group, None) or GroupState(tag)
        for a, b, direction in batch_update.moved:
            row_a, row_b = self.rows.pop(a, None), self.rows.pop(b, None)
            if row_a is not None:
                self.rows[b] = row_a
            if direction == MoveDirectionality.SWAP and row_b is not None:
                self.rows[a] = row_b
            elif direction != MoveDirectionality.SWAP and row_b is not None:
                self._retire_if_empty(row_b.tag.group)  # row b was overwritten by a

    def _forget_row(self, index: int) -> None:
        row = self.rows.pop(index, None)
        if row is not None:
            self._retire_if_empty(row.tag.group)

    def _retire_if_empty(self, group: str) -> None:
        if group in self.groups and not any(r.tag.group == group for r in self.rows.values()):
            self.absent[group] = self.groups.pop(group)
            while len(self.absent) > MAX_ABSENT_GROUPS:
                self.absent.popitem(last=False)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [batch rows, vocab] -> the same tensor with every MOD sibling forced to its group's token."""
        if not self.rows:
            return logits
        members: dict[str, dict[int, int]] = {}  # group -> member -> batch row
        clash: set[str] = set()
        for index, row in self.rows.items():
            seen = members.setdefault(row.tag.group, {})
            if row.tag.member in seen or row.tag.group_key != self.groups[row.tag.group].tag.group_key:
                clash.add(row.tag.group)  # two rows claim one member, or siblings disagree on settings
            seen[row.tag.member] = index
        ready, ready_logprobs, forced = [], [], []
        for group, rows in members.items():
            state = self.groups[group]
            failure = self._check(state, rows, group in clash, logits.device)
            if failure is not None:
                state.failed = state.failed or failure
                forced.append((state, rows, None))
                continue
            order = [rows[k] for k in range(state.math_rows)]
            vocab = state.tag.vocab_size
            # Padded logits past the tokenizer are not tokens: drop them before normalising (as the
            # transformers engine does), in float32 like it.
            ready_logprobs.append(torch.log_softmax(logits[order, :vocab].float(), dim=-1))
            ready.append((state, rows))
        if ready:
            try:
                picks = choose_tokens([s for s, _ in ready], ready_logprobs)
            except Exception:  # never take the whole engine down for one batch of MOD rows
                logger.exception("moddecode: choosing MOD tokens failed; failing those groups")
                picks = [Failure.INTERNAL] * len(ready)
            for (state, rows), pick in zip(ready, picks):
                if isinstance(pick, Failure):
                    state.failed = pick
                    pick = None
                forced.append((state, rows, pick))
        for state, rows, token in forced:
            index = list(rows.values())
            logits[index] = -math.inf
            if token is not None:
                logits[index, token] = 0.0
            else:
                for member, i in rows.items():
                    logits[i, failure_token(state.failed, member, state.tag.members)] = 0.0
        return logits

    def _check(self, state: GroupState, rows: dict[int, int], clash: bool, device) -> Failure | None:
        """Why this group cannot get a combined token this step, or None (then it is synced and started)."""
        if state.failed is not None:
            return state.failed
        if clash or len(rows) != state.tag.members:
            return Failure.LOCKSTEP
        lengths = [len(self.rows[rows[k]].output_ids) for k in range(state.tag.members)]
        if not state.started:
            if any(lengths):
                return Failure.STATE_LOST  # resumed after its state was forgotten
            state.start(device)
        return state.sync(lengths)
