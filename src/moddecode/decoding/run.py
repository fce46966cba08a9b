"""What a strategy gets to decode with (`DecodeRun`) and what a strategy declares (`Strategy`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import torch

from .combiner import Combiner
from .outputs import TextDelta

if TYPE_CHECKING:  # annotations only: the config module validates names against the strategies
    from .config import DecodingConfig

Tensor = torch.Tensor


class RowForward(Protocol):
    """Batched next-token log-probabilities of every member (policies, then the reference if it runs)
    for N live sequences, with their KV caches. The transformers engine implements it."""

    device: torch.device

    def add(self, prompts: list[str], uses_reference: list[bool]) -> Tensor:
        """Start one sequence per prompt after the live ones (the reference scores those flagged);
        returns their next-token log-probs [members, n, V]."""

    def step(self, tokens: Tensor) -> Tensor:
        """Append one token per live sequence ([N]); returns next-token log-probs [members, N, V]."""

    def select(self, index: Tensor) -> None:
        """Keep/reorder/duplicate sequences: sequence j becomes old sequence index[j] (beams, finished rows)."""


@dataclass
class DecodeRun:
    """One decode call: the rows to run, how to score them, and what to decode."""

    rows: RowForward
    combiner: Combiner  # one weighting, one divergence and scope for all prompts
    prompts: list[str]
    config: DecodingConfig
    tokenizer: object
    eos_ids: set[int]
    limits: list[int]  # max_new_tokens per prompt
    diagnostics: bool = False  # collect TokenDiagnostics per token (strategies that choose token by token)


@dataclass(frozen=True)
class Strategy:
    """A decoding strategy: how it picks tokens and what it can do. It gives one of:

    choose(scores [n, V], rows) -> tokens [n]: a token-by-token strategy; its rows run in the shared
        loop (decoding/loop.py), where they can join and leave a running batch at any step;
    run(DecodeRun): a strategy with its own loop (beam search), yielding TextDelta pieces, each
        prompt's last delta carrying its finished Generation.
    streams: text arrives while decoding (beam search knows the best text only at the end).
    no_stream_reason: why not, for the error a caller gets when asking it to stream.
    per_row_limits: honours a different max_new_tokens per prompt.
    """

    name: str
    label: str  # for messages, e.g. "beam search"
    choose: Callable[[Tensor, list], Tensor] | None = None
    run: Callable[[DecodeRun], Iterator[TextDelta]] | None = None
    streams: bool = True
    per_row_limits: bool = True
    no_stream_reason: str = ""
