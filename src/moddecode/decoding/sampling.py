"""Sampling from the combined score: per-prompt random streams, temperature, top-k and top-p."""

from __future__ import annotations

import math

import torch

from .config import DecodingConfig
from .incremental import decode_incremental
from .run import DecodeRun, Strategy

Tensor = torch.Tensor


def prompt_generators(config: DecodingConfig, num_prompts: int, device) -> list[torch.Generator]:
    """One random stream per prompt (seed + prompt index), so a seeded prompt samples the same text
    whatever else shares its batch. Without a seed each stream is seeded from fresh entropy (torch's
    global generator is left alone)."""
    generators = []
    for index in range(num_prompts):
        g = torch.Generator(device=device)
        if config.seed is None:
            g.seed()
        else:
            g.manual_seed(config.seed + index)
        generators.append(g)
    return generators


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


def _sample(run: DecodeRun):
    generators = prompt_generators(run.config, len(run.prompts), run.rows.device)
    return decode_incremental(run, lambda scores, live: sample_tokens(scores, run.config, [generators[i] for i in live]))


SAMPLE = Strategy("sample", run=_sample, label="sampling")
