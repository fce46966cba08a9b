"""Greedy decoding: the token with the highest combined score."""

from __future__ import annotations

from .run import Strategy

GREEDY = Strategy("greedy", label="greedy decoding", choose=lambda scores, rows: scores.argmax(dim=-1))
