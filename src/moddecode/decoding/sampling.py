"""Sampling from the combined score: per-prompt random streams, temperature, top-k and top-p."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .run import Strategy

if TYPE_CHECKING:  # annotations only: the config module validates names against the strategies
    from .config import DecodingConfig

Tensor = torch.Tensor


def row_generator(seed: int | None, index: int, device) -> torch.Generator:
    """The random stream of prompt `index` of a call: seed + index, so a seeded prompt samples the same
    text whatever else shares its batch; without a seed, fresh entropy (torch's global generator is
    left alone)."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed + index)
    return g


def sample_tokens(scores: Tensor, config: DecodingConfig, generators: list[torch.Generator]) -> Tensor:
    """Sample from softmax(score / temperature) after top-k and top-p filtering.

    scores: [N, V]; generators: one per row (each row's prompt stream)."""
    logits = scores / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if config.top_p is not None and config.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token once the mass before it already reaches top_p (the first token always stays).
        drop_sorted = (probs.cumsum(-1) - probs) >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    probs = torch.softmax(logits, dim=-1).float()
    return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])


def _choose(scores: Tensor, rows: list) -> Tensor:
    """Each row samples with its own options and random stream (rows of one step may differ in both)."""
    return torch.cat([sample_tokens(scores[j:j + 1], row.spec.config, [row.generator]) for j, row in enumerate(rows)])


SAMPLE = Strategy("sample", label="sampling", choose=_choose)
