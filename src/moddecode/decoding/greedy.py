"""Greedy decoding: the token with the highest combined score."""

from __future__ import annotations

from .incremental import decode_incremental
from .run import Strategy

GREEDY = Strategy("greedy", run=lambda run: decode_incremental(run, lambda scores, live: scores.argmax(dim=-1)),
                  label="greedy decoding")
