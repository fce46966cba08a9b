"""One MOD group's decoding state inside vLLM, and the token choice for many groups at once.

Pure torch (no vLLM import), so it is tested against moddecode's own `Scorer`/`sample_tokens` without
an engine. The logits processor owns one `GroupState` per live group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...combine import combine_logprobs
from ...decoding.sampling import sample_tokens
from ...divergences import get_divergence
from ...errors import InfeasibleWeightsError
from .protocol import Failure, GroupTag

Tensor = torch.Tensor


@dataclass
class GroupState:
    """What must survive from step to step (and across a whole-group preemption) for one group.

    A chosen token is only *pending* until every sibling shows it in its output: vLLM discards the
    token of a row that was still prefilling, and then the group's position, prefix log-probs and
    random stream must not advance.
    """

    tag: GroupTag
    position: int = 0  # tokens every sibling has (committed)
    cumulative: Tensor | None = None  # [math rows] float64 log-prob of the committed prefix per member
    generator: torch.Generator | None = None
    pending: tuple[int, Tensor, Tensor | None] | None = None  # (token, its log-probs, generator state before)
    failed: Failure | None = None
    started: bool = False

    @property
    def math_rows(self) -> int:
        """Rows that enter the combination: the policies, then the reference if any (not the witness)."""
        return self.tag.num_policies + int(self.tag.reference)

    def sync(self, lengths: list[int]) -> Failure | None:
        """Reconcile with the siblings' output lengths (index = member) before choosing the next token."""
        if len(set(lengths)) != 1:
            return Failure.LOCKSTEP
        length = lengths[0]
        if self.pending is not None:
            token, logprobs, generator_state = self.pending
            self.pending = None
            if length == self.position + 1:  # every sibling got the token: commit it
                self.position = length
                if self.cumulative is not None:
                    self.cumulative = self.cumulative + logprobs
                return None
            if length == self.position and generator_state is not None:  # discarded everywhere: undo the draw
                self.generator.set_state(generator_state)
        return None if length == self.position else Failure.LOCKSTEP

    def start(self, device: torch.device) -> None:
        self.started = True
        if self.tag.scope == "sequence":
            self.cumulative = torch.zeros(self.math_rows, dtype=torch.float64, device=device)
        if self.tag.strategy == "sample":
            self.generator = torch.Generator(device=device)
            if self.tag.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(self.tag.seed)


@dataclass
class _Batch:
    """Groups whose scores can be computed in one combine_logprobs call."""

    states: list[GroupState] = field(default_factory=list)
    logprobs: list[Tensor] = field(default_factory=list)  # each [math rows, V]


def _batch_key(tag: GroupTag) -> tuple:
    return (tag.num_policies, tag.reference, tag.divergence, tag.scope, tag.strategy,
            tag.temperature, tag.top_k, tag.top_p)


def _scores(states: list[GroupState], logprobs: Tensor) -> Tensor:
    """logprobs [math rows, G, V] next-token -> [G, V] combined scores (paper Eq. 5/6)."""
    tag = states[0].tag
    lp = logprobs.double()
    if tag.scope == "sequence":  # Eq. 6: score whole prefixes, not only the next token
        lp = torch.stack([s.cumulative for s in states], dim=1).unsqueeze(-1) + lp
    weights = torch.tensor([s.tag.weights for s in states], dtype=torch.float64, device=lp.device).T
    m = tag.num_policies
    return combine_logprobs(lp[:m], weights, get_divergence(tag.divergence),
                            ref_logprobs=lp[m] if tag.reference else None)


def choose_tokens(states: list[GroupState], logprobs: list[Tensor]) -> list[int | Failure]:
    """The next token of each group, or the reason it has none.

    states: groups already `sync`ed and started; logprobs: per group [math rows, V] normalised
    next-token log-probs (row order = member order). Records each choice as the group's pending token.
    """
    batches: dict[tuple, _Batch] = {}
    for state, lp in zip(states, logprobs):
        batch = batches.setdefault(_batch_key(state.tag), _Batch())
        batch.states.append(state)
        batch.logprobs.append(lp)
    chosen: dict[int, int | Failure] = {}
    for batch in batches.values():
        try:
            picks = _choose_batch(batch.states, batch.logprobs)
        except InfeasibleWeightsError:
            # One row's weights rule out every token: find it, decode the others.
            picks = []
            for state, lp in zip(batch.states, batch.logprobs):
                try:
                    picks += _choose_batch([state], [lp])
                except InfeasibleWeightsError:
                    picks.append(Failure.INFEASIBLE)
        for state, pick in zip(batch.states, picks):
            chosen[id(state)] = pick
    return [chosen[id(s)] for s in states]


def _choose_batch(states: list[GroupState], logprobs: list[Tensor]) -> list[int]:
    lp = torch.stack(logprobs, dim=1)  # [math rows, G, V]
    scores = _scores(states, lp)
    tag = states[0].tag
    before = [s.generator.get_state() if s.generator is not None else None for s in states]
    if tag.strategy == "greedy":
        tokens = scores.argmax(dim=-1)
    else:
        tokens = sample_tokens(scores, tag.decoding_config(), [s.generator for s in states])
    picked = lp.gather(2, tokens.view(1, -1, 1).expand(lp.shape[0], -1, 1)).squeeze(2).double()  # [rows, G]
    out = tokens.tolist()
    for g, state in enumerate(states):
        state.pending = (out[g], picked[:, g], before[g])
    return out
