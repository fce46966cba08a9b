"""What every scorer is: the `Scorer` protocol, the batch check, and a wrapper for plain functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ..errors import ConfigError


@runtime_checkable
class Scorer(Protocol):
    """name: the objective's name; score: one float per (prompt, response) pair, same order."""

    name: str

    def score(self, prompts: list[str], responses: list[str]) -> list[float]: ...


def check_pairs(prompts: Sequence[str], responses: Sequence[str], who: str) -> tuple[list[str], list[str]]:
    """Validate a batch: two equally long lists of strings."""
    for label, seq in (("prompts", prompts), ("responses", responses)):
        if isinstance(seq, str) or not isinstance(seq, Sequence):
            raise ConfigError(f"{who}: {label} must be a list of strings, got {type(seq).__name__}")
        bad = [i for i, s in enumerate(seq) if not isinstance(s, str)]
        if bad:
            raise ConfigError(f"{who}: {label}[{bad[0]}] is {type(seq[bad[0]]).__name__}, not str")
    if len(prompts) != len(responses):
        raise ConfigError(
            f"{who}: got {len(prompts)} prompts but {len(responses)} responses; pass one prompt per response"
        )
    return list(prompts), list(responses)


class CallableScorer:
    """Wrap a plain function (prompts, responses) -> floats as a Scorer, checking what it returns."""

    def __init__(self, name: str, fn: Callable[[list[str], list[str]], Sequence[float]]):
        if not callable(fn):
            raise ConfigError(f"scorer {name!r}: expected a callable (prompts, responses) -> floats, got {fn!r}")
        self.name = name
        self.fn = fn

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        prompts, responses = check_pairs(prompts, responses, self.name)
        out = self.fn(prompts, responses)
        try:
            values = [float(v) for v in out]
        except (TypeError, ValueError):
            raise ConfigError(f"scorer {self.name!r} must return numbers, got {out!r}") from None
        if len(values) != len(responses):
            raise ConfigError(f"scorer {self.name!r} returned {len(values)} scores for {len(responses)} responses")
        return values
