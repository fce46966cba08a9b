"""What a strategy gets to decode with (`DecodeRun`) and what a strategy declares (`Strategy`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch

from .combiner import Combiner
from .config import DecodingConfig
from .outputs import TextDelta

Tensor = torch.Tensor


class RowForward(Protocol):
    """Batched next-token log-probabilities of every member (policies, then the reference if it runs)
    for N live sequences, with their KV caches. The transformers engine implements it."""

    device: torch.device

    def prefill(self, prompts: list[str]) -> Tensor:
        """Start one sequence per prompt; returns next-token log-probs [members, N, V]."""

    def step(self, tokens: Tensor) -> Tensor:
        """Append one token per live sequence ([N]); returns next-token log-probs [members, N, V]."""

    def select(self, index: Tensor) -> None:
        """Keep/reorder/duplicate sequences: sequence j becomes old sequence index[j] (beams, finished rows)."""


@dataclass
class DecodeRun:
    """One decode call: the rows to run, how to score them, and what to decode."""

    rows: RowForward
    combiner: Combiner
    prompts: list[str]
    config: DecodingConfig
    tokenizer: object
    eos_ids: set[int]
    limits: list[int]  # max_new_tokens per prompt
    diagnostics: bool = False  # collect TokenDiagnostics per token (strategies that choose token by token)


@dataclass(frozen=True)
class Strategy:
    """A decoding strategy: how it picks tokens and what it can do.

    run: yields TextDelta pieces; each prompt's last delta carries its finished Generation.
    streams: text arrives while decoding (beam search knows the best text only at the end).
    no_stream_reason: why not, for the error a caller gets when asking it to stream.
    per_row_limits: honours a different max_new_tokens per prompt.
    """

    name: str
    run: Callable[[DecodeRun], Iterator[TextDelta]]
    label: str  # for messages, e.g. "beam search"
    streams: bool = True
    per_row_limits: bool = True
    no_stream_reason: str = ""
