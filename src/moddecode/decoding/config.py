"""`DecodingConfig`: every decoding option in one place, for the library, CLI, server and sweeps.

A new option is one field here (with its check) plus its use in a strategy; the edges derive their
flags, schema fields and YAML keys from these fields (see tests/test_decoding_config.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..checks import is_positive_int
from ..divergences import Divergence, get_divergence
from ..errors import ConfigError, UnknownNameError
from .strategies import STRATEGIES

SCOPES = ["sequence", "token"]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class DecodingConfig:
    """How to decode: the strategy and its options, and the divergence the policies are combined under.

    `divergence=None` means the MOD's own default. `stop` may be given as one string or a list; it is
    stored as a tuple. Validated on construction; errors name the field (`ConfigError.param`).
    """

    strategy: str = "greedy"  # a name in moddecode.decoding.STRATEGIES: greedy, sample, beam
    max_new_tokens: int = 128
    temperature: float = 1.0  # sampling: softmax(score / temperature)
    top_k: int | None = None  # sampling: keep the k best tokens
    top_p: float | None = None  # sampling: keep the smallest set of tokens with this much mass
    seed: int | None = None  # sampling: prompt i draws from seed + i
    num_beams: int = 4  # beam search width
    scope: str = "sequence"  # 'sequence' (Eq. 6 on whole prefixes) or 'token' (next-token only)
    stop: tuple[str, ...] = ()  # stop strings (not part of the returned text)
    ignore_eos: bool = False  # keep decoding past EOS (benchmarks: fixed-length outputs)
    divergence: str | Divergence | None = None  # 'reverse_kl', 'forward_kl', 'jsd', 'alpha:<a>', ...

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.divergence is not None:
            try:
                div = get_divergence(self.divergence)
            except ConfigError as exc:
                exc.param = "divergence"
                raise
            # names are stored canonically ('Forward-KL' -> 'forward_kl'); custom f objects as they are
            object.__setattr__(self, "divergence", div if div.name == "custom" else div.name)
        for f in dataclasses.fields(self):
            try:
                problem = _CHECKS[f.name](getattr(self, f.name))
            except ConfigError as exc:  # an unknown name: its own "did you mean" message
                exc.param = f.name
                raise
            if problem:
                raise ConfigError(f"{f.name} {problem}, got {getattr(self, f.name)!r}", param=f.name)

    # ----- building one from user input -----

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, where: str = "decoding options") -> "DecodingConfig":
        """A config from a YAML/JSON mapping: unknown keys get "did you mean", errors name `where.field`."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a mapping like {{max_new_tokens: 48}}, got {raw!r}")
        known = cls.field_names()
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown key {key!r} in {where}.{hint} Allowed: {', '.join(known)}.",
                                  param=str(key))
        try:
            return cls(**raw)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}", param=exc.param) from None

    def merged(self, **overrides) -> "DecodingConfig":
        """This config with every override that is not None applied (and validated)."""
        unknown = sorted(set(overrides) - set(self.field_names()))
        if unknown:
            raise UnknownNameError("decoding option", unknown[0], self.field_names())
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self

    def as_mapping(self) -> dict[str, Any]:
        """Plain values (stop as a list, divergence by name), e.g. for JSON or run files."""
        out = dataclasses.asdict(self)
        out["stop"] = list(self.stop)
        if isinstance(self.divergence, Divergence):
            out["divergence"] = self.divergence.name
        return out


def _check_strategy(value) -> str | None:
    if value not in STRATEGIES:
        raise UnknownNameError("strategy", str(value), list(STRATEGIES))
    return None


def _check_scope(value) -> str | None:
    if value not in SCOPES:
        raise UnknownNameError("scope", str(value), SCOPES)
    return None


_CHECKS = {
    "strategy": _check_strategy,
    "max_new_tokens": lambda v: None if is_positive_int(v) else "must be a positive integer",
    "temperature": lambda v: None if _number(v) and v > 0 else
    "must be a finite number > 0 (for deterministic output use strategy='greedy')",
    "top_k": lambda v: None if v is None or is_positive_int(v) else "must be a positive integer or None",
    "top_p": lambda v: None if v is None or (_number(v) and 0 < v <= 1) else "must be in (0, 1]",
    # a 64-bit signed seed (OpenAI's range); seed + prompt index still fits torch's 64-bit generators
    "seed": lambda v: None if v is None or (isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63)
    else "must be an integer in [-2^63, 2^63)",
    "num_beams": lambda v: None if is_positive_int(v) else "must be a positive integer",
    "scope": _check_scope,
    "stop": lambda v: None if isinstance(v, tuple) and all(isinstance(s, str) and s for s in v)
    else "must be a string or a list of strings (none empty)",
    "ignore_eos": lambda v: None if isinstance(v, bool) else "must be true or false",
    "divergence": lambda v: None,  # resolved above
}
