"""The token-by-token decoding loop, with rows that join and leave between steps (continuous batching).

Every prompt being decoded is a row with its own weights, divergence, scope, strategy and options,
stop strings and token limit. Each `step()`:
  1. drops rows whose caller went away,
  2. admits waiting rows (their prompts are prefilled and join the running KV cache),
  3. combines the members' log-probs into MOD scores, per group of rows decoded alike,
  4. lets each row's strategy choose its token,
  5. streams text, retires rows that finished (EOS, a stop string, their limit),
  6. runs ONE forward per base model for all remaining rows.
Rows with the same prompt and the same tokens so far (one prompt at many weightings, or n samples of
it) read one sequence of that forward: it is prefilled once and forks (its KV rows duplicate) where
their tokens part. A sequence's log-probs depend only on its tokens, so sharing changes no result; the
weightings of one prompt in a sweep often agree for dozens of tokens, and those forwards are saved.
`MOD.generate` submits its prompts and steps until they are done; a server keeps stepping and
submits requests as they arrive, so a newcomer waits at most one step before its prefill.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..divergences import Divergence, get_divergence
from ..errors import InfeasibleWeightsError
from .combiner import Combiner
from .config import DecodingConfig
from .outputs import Generation, TextDelta, TokenDiagnostics, TokenLogprob
from .run import RowForward
from .sampling import row_generator
from .strategies import get_strategy
from .text import TextTracker

Tensor = torch.Tensor


@dataclass
class RowSpec:
    """One prompt to decode. `config.divergence` must be set; `key` comes back with every event."""

    prompt: str
    weights: Tensor  # [M] float64
    config: DecodingConfig
    limit: int  # max_new_tokens of this row
    uses_reference: bool = False
    index: int = 0  # the prompt's position in its call: its deltas' index; sampling draws from seed + index
    diagnostics: bool = False
    logprobs: int | None = None  # None: none; k: each token's log-prob and the k most likely tokens
    key: object = None
    is_cancelled: Callable[[], bool] | None = None  # polled before every step


@dataclass
class LoopEvent:
    """Text for one row (its last event carries `delta.result`), or the error that ended it."""

    key: object
    delta: TextDelta | None = None
    error: Exception | None = None


@dataclass
class _Row:
    spec: RowSpec
    divergence: Divergence
    tracker: TextTracker
    generator: torch.Generator | None
    generated: int = 0
    diagnostics: list[TokenDiagnostics] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    unsent: int = 0  # logprobs not yet attached to a delta
    step_logprob: TokenLogprob | None = None

    @property
    def group(self) -> tuple:
        """Rows decoded alike share one combine call."""
        c = self.spec.config
        return (c.divergence if isinstance(c.divergence, str) else id(c.divergence), c.scope,
                self.spec.uses_reference, c.strategy)


class DecodeLoop:
    """Decodes rows token by token over a `RowForward`; rows may be submitted from any thread."""

    def __init__(self, rows: RowForward, tokenizer, eos_ids: set[int], max_rows: int | None = None,
                 reference_eos_ids: set[int] = frozenset(), share_prefixes: bool = True):
        self.share_prefixes = share_prefixes  # False: every row its own sequence (to measure what sharing saves)
        self.rows = rows
        self.reference_eos_ids = reference_eos_ids  # also end the rows the reference scores
        self.max_rows = max_rows  # live rows at most; more wait for a free place
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self._waiting: list[RowSpec] = []
        self._lock = threading.Lock()
        self.live: list[_Row] = []
        self.sequence_of: list[int] = []  # per live row: the sequence of the forward that it reads
        self.logprobs: Tensor | None = None  # [members, S, V] next-token log-probs of the S live sequences
        self.cumulative: Tensor | None = None  # [members, N] log-probs of each row's tokens so far
        self.weights: Tensor | None = None  # [M, N]
        self.steps = 0  # forward steps run
        self.last_step_rows = 0  # rows that chose a token in the last step
        self.sequences_stepped = 0  # sequence forwards run in all (rows sharing a sequence count once)
        self.last_admitted = 0  # rows that joined in the last step

    def submit(self, specs: list[RowSpec]) -> None:
        with self._lock:
            self._waiting.extend(specs)

    @property
    def busy(self) -> bool:
        return bool(self.live or self._waiting)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def waiting(self) -> list[RowSpec]:
        with self._lock:
            return list(self._waiting)

    def step(self) -> list[LoopEvent]:
        events: list[LoopEvent] = []
        self._keep([j for j, row in enumerate(self.live) if not _cancelled(row.spec)])
        self._admit()
        if not self.live:
            return events
        self.last_step_rows = len(self.live)
        tokens, failed = self._choose(events)
        self._advance(tokens, failed, events)
        return events

    # ----- the parts of a step -----

    def _admit(self) -> None:
        with self._lock:
            waiting = [s for s in self._waiting if not _cancelled(s)]
            room = len(waiting) if self.max_rows is None else max(self.max_rows - len(self.live), 0)
            specs, self._waiting = waiting[:room], waiting[room:]
        self.last_admitted = len(specs)
        if not specs:
            return
        # rows admitted together with the same prompt (and reference use) share one prefilled sequence
        live_sequences = self.logprobs.shape[1] if self.live else 0
        position: dict[tuple, int] = {}
        starts: list[RowSpec] = []
        for s in specs:
            key = (_prompt_key(s.prompt) if self.share_prefixes else id(s), s.uses_reference)
            if key not in position:
                position[key] = len(starts)
                starts.append(s)
            self.sequence_of.append(live_sequences + position[key])
        logprobs = self.rows.add([s.prompt for s in starts], [s.uses_reference for s in starts])
        device = logprobs.device
        weights = torch.stack([s.weights.to(device, torch.float64) for s in specs], dim=1)
        cumulative = torch.zeros((logprobs.shape[0], len(specs)), dtype=torch.float64, device=device)
        if self.live:
            logprobs = torch.cat([self.logprobs, logprobs], dim=1)
            cumulative = torch.cat([self.cumulative, cumulative], dim=1)
            weights = torch.cat([self.weights, weights], dim=1)
        self.logprobs, self.cumulative, self.weights = logprobs, cumulative, weights
        for s in specs:
            sampled = get_strategy(s.config.strategy).name == "sample"
            self.live.append(_Row(s, get_divergence(s.config.divergence), TextTracker(self.tokenizer, s.config.stop),
                                  row_generator(s.config.seed, s.index, device) if sampled else None))

    def _choose(self, events: list[LoopEvent]) -> tuple[Tensor, set[int]]:
        """One token per live row; rows whose weights leave no feasible token fail (others go on)."""
        tokens = torch.zeros(len(self.live), dtype=torch.long, device=self.logprobs.device)
        failed: set[int] = set()
        groups: dict[tuple, list[int]] = {}
        for j, row in enumerate(self.live):
            groups.setdefault(row.group, []).append(j)
        for members in groups.values():
            first = self.live[members[0]]
            index = torch.tensor(members, device=self.logprobs.device)
            combiner = Combiner(first.divergence, self.weights[:, index], first.spec.config.scope,
                                first.spec.uses_reference)
            logprobs = self.logprobs[:, [self.sequence_of[j] for j in members]]
            cumulative = self.cumulative[:, index]
            try:
                scores = combiner.scores(logprobs, cumulative)
            except InfeasibleWeightsError:  # find the rows at fault; the rest of the group decodes on
                ok = [i for i, j in enumerate(members) if self._feasible(combiner, logprobs, cumulative, i, j, events)]
                failed.update(j for i, j in enumerate(members) if i not in ok)
                if not ok:
                    continue
                members, index = [members[i] for i in ok], index[ok]
                combiner.weights = combiner.weights[:, ok]
                logprobs, cumulative = logprobs[:, ok], cumulative[:, ok]
                scores = combiner.scores(logprobs, cumulative)
            rows = [self.live[j] for j in members]
            chosen = get_strategy(first.spec.config.strategy).choose(scores, rows)
            tokens[index] = chosen
            for i, row in enumerate(rows):
                if row.spec.logprobs is not None:
                    row.step_logprob = self._logprob(scores[i], int(chosen[i]), row.spec.logprobs)
            if any(r.spec.diagnostics for r in rows):
                for row, d in zip(rows, combiner.diagnostics(logprobs, cumulative, chosen, scores, self.tokenizer)):
                    row.diagnostics.append(d)
        return tokens, failed

    def _logprob(self, scores: Tensor, token: int, k: int) -> TokenLogprob:
        logprobs = torch.log_softmax(scores, dim=-1)
        top = torch.topk(logprobs, k) if k else None
        decode = self.tokenizer.decode
        return TokenLogprob(token, decode([token]), float(logprobs[token]),
                            [] if top is None else [(int(t), decode([int(t)]), float(v))
                                                    for v, t in zip(top.values.tolist(), top.indices.tolist())])

    def _feasible(self, combiner: Combiner, logprobs: Tensor, cumulative: Tensor, i: int, j: int,
                  events: list[LoopEvent]) -> bool:
        try:
            Combiner(combiner.divergence, combiner.weights[:, i:i + 1], combiner.scope,
                     combiner.uses_reference).scores(logprobs[:, i:i + 1], cumulative[:, i:i + 1])
            return True
        except InfeasibleWeightsError as exc:
            events.append(LoopEvent(self.live[j].spec.key, error=exc))
            return False

    def _advance(self, tokens: Tensor, failed: set[int], events: list[LoopEvent]) -> None:
        sequences = torch.tensor(self.sequence_of, dtype=torch.long, device=tokens.device)
        self.cumulative = self.cumulative + self.logprobs[:, sequences, tokens].double()
        keep = []
        for j, (row, token) in enumerate(zip(self.live, tokens.tolist())):
            if j in failed:
                continue
            is_eos = not row.spec.config.ignore_eos and (
                token in self.eos_ids or (row.spec.uses_reference and token in self.reference_eos_ids))
            if not is_eos:
                row.tracker.push(token)
                if row.step_logprob is not None:
                    row.logprobs.append(row.step_logprob)
            row.generated += 1
            done = is_eos or row.tracker.stopped or row.generated >= row.spec.limit
            piece = row.tracker.delta(final=done)
            if done:
                reason = "stop" if (is_eos or row.tracker.stopped) else "length"
                result = Generation(row.tracker.text, row.tracker.token_ids, reason, diagnostics=row.diagnostics,
                                    logprobs=row.logprobs)
                events.append(LoopEvent(row.spec.key, TextDelta(row.spec.index, piece, result, self._unsent(row))))
            else:
                if piece:
                    events.append(LoopEvent(row.spec.key, TextDelta(row.spec.index, piece, None, self._unsent(row))))
                keep.append(j)
        self._keep(keep, tokens)

    @staticmethod
    def _unsent(row: _Row) -> list[TokenLogprob]:
        """The log-probs of the tokens decoded since the row's last delta."""
        pending, row.unsent = row.logprobs[row.unsent:], len(row.logprobs)
        return pending

    def _keep(self, keep: list[int], tokens: Tensor | None = None) -> None:
        """Retire every live row not in `keep`; with `tokens`, then feed the kept rows' tokens forward.

        The kept rows' sequences are renumbered; rows that shared a sequence and chose different tokens
        fork it (its KV rows are duplicated), and sequences that no row reads leave."""
        chosen = [None] * len(self.live) if tokens is None else tokens.tolist()
        forks: dict[tuple[int, int | None], int] = {}  # (old sequence, token) -> new sequence
        sequence_of = [forks.setdefault((self.sequence_of[j], chosen[j]), len(forks)) for j in keep]
        old = [sequence for sequence, _ in forks]
        if old != list(range(self.logprobs.shape[1] if self.logprobs is not None else 0)):
            index = torch.tensor(old, dtype=torch.long, device=self.rows.device)
            self.rows.select(index)
            self.logprobs = self.logprobs[:, index] if old else None
        if len(keep) < len(self.live):
            rows = torch.tensor(keep, dtype=torch.long, device=self.rows.device)
            self.live = [self.live[j] for j in keep]
            self.cumulative, self.weights = self.cumulative[:, rows], self.weights[:, rows]
        self.sequence_of = sequence_of
        if tokens is not None and self.live:
            self.logprobs = self.rows.step(torch.tensor([token for _, token in forks], dtype=torch.long,
                                                        device=tokens.device))
            self.steps += 1
            self.sequences_stepped += len(forks)


def _cancelled(spec: RowSpec) -> bool:
    return spec.is_cancelled is not None and spec.is_cancelled()


def _prompt_key(prompt) -> str:
    """Equal prompts (strings or conversations) give equal keys."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
