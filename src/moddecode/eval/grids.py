"""Preference-weight grids for sweeps.

A weighting is a tuple of floats, one per objective, in the order the policies are given. Grids are
built with exact rational arithmetic (`fractions.Fraction`) and converted to float once, so the
entries are the floats nearest to i/n (0.3, never 0.30000000000000004) and each vector sums to its
target as exactly as floats allow.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

from ..checks import positive_int
from ..errors import ConfigError, UnknownNameError

Weights = tuple[float, ...]


def _as_fraction(x, what: str) -> Fraction:
    """Exact value of a user number; floats go through their shortest repr (0.1 -> 1/10)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, Fraction)):
        raise ConfigError(f"{what} must be a number, got {x!r}")
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ConfigError(f"{what} must be finite, got {x!r}")
        return Fraction(repr(x))
    return Fraction(x)


def _floats(fracs: Iterable[Fraction]) -> Weights:
    # `+ 0.0` turns -0.0 into 0.0 so equal weightings print and hash the same.
    return tuple(float(f) + 0.0 for f in fracs)


def two_objective_grid(n: int = 11) -> list[Weights]:
    """n evenly spaced weightings (i/(n-1), 1 - i/(n-1)), i = 0..n-1: [(0, 1), (0.1, 0.9), ..., (1, 0)] for n=11.

    This is the grid of the paper's two-objective experiments (Figures 1-3).
    """
    n = positive_int(n, "n", minimum=2)
    return [_floats((Fraction(i, n - 1), 1 - Fraction(i, n - 1))) for i in range(n)]


def simplex_lattice(m: int, steps: int) -> list[Weights]:
    """All m-vectors whose entries are multiples of 1/steps, are >= 0 and sum to 1.

    There are C(steps + m - 1, m - 1) of them, in lexicographic order (for m=2 the order of
    `two_objective_grid(steps + 1)`).
    """
    m = positive_int(m, "m (number of objectives)")
    steps = positive_int(steps, "steps")
    out = []
    # Stars and bars: choose m-1 bar positions among steps + m - 1 slots.
    for bars in itertools.combinations(range(steps + m - 1), m - 1):
        edges = (-1, *bars, steps + m - 1)
        counts = [edges[k + 1] - edges[k] - 1 for k in range(m)]
        out.append(_floats(Fraction(c, steps) for c in counts))
    return sorted(out)


def explicit(weights: Sequence[Sequence[float]]) -> list[Weights]:
    """The given weightings as float tuples, after checking they are finite and equally long.

    Any real weights are allowed (negative ones, sums other than 1): the paper uses both.
    """
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or not weights:
        raise ConfigError(f"weights must be a non-empty list of weight lists, e.g. [[0.3, 0.7]], got {weights!r}")
    out = []
    for k, w in enumerate(weights):
        if isinstance(w, (str, bytes)) or not isinstance(w, Sequence) or not w:
            raise ConfigError(f"weights[{k}] must be a non-empty list of numbers, got {w!r}")
        out.append(_floats(_as_fraction(x, f"weights[{k}][{j}]") for j, x in enumerate(w)))
    lengths = {len(w) for w in out}
    if len(lengths) > 1:
        raise ConfigError(
            f"all weightings must have the same length (one weight per objective); got lengths {sorted(lengths)}"
        )
    return out


def negative_line(
    ts: Sequence[float] = (0, 1, 2, 3, 4), m: int = 2, positive: int = 0, negative: int = 1
) -> list[Weights]:
    """Weightings with w[positive] = 1 + t, w[negative] = -t, other entries 0, for each t in ts.

    Every vector sums to 1 and has one negative weight, as in the paper's Table 1:
    ts = 0..4 gives (1, 0), (2, -1), (3, -2), (4, -3), (5, -4). MOD then optimises
    (1+t) R_positive - t R_negative, i.e. it steers *against* objective `negative`.
    """
    m = positive_int(m, "m (number of objectives)", minimum=2)
    for label, idx in (("positive", positive), ("negative", negative)):
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < m:
            raise ConfigError(f"{label} must be an objective index in [0, {m - 1}], got {idx!r}")
    if positive == negative:
        raise ConfigError(f"positive and negative must be different objectives, both are {positive}")
    if isinstance(ts, (str, bytes)) or not isinstance(ts, Iterable):
        raise ConfigError(f"ts must be a list of numbers, got {ts!r}")
    out = []
    for k, t in enumerate(ts):
        tf = _as_fraction(t, f"ts[{k}]")
        w = [Fraction(0)] * m
        w[positive], w[negative] = 1 + tf, -tf
        out.append(_floats(w))
    if not out:
        raise ConfigError("ts must contain at least one value")
    return out


# type -> (builder, accepted keys). parse_grid maps a YAML-like dict onto these.
_GRID_TYPES = {
    "two_objective": (two_objective_grid, {"n"}),
    "simplex": (simplex_lattice, {"m", "steps"}),
    "explicit": (explicit, {"weights"}),
    "negative": (negative_line, {"ts", "m", "positive", "negative"}),
}


def parse_grid(spec: Mapping | Sequence) -> list[Weights]:
    """Build a grid from a config value.

    Accepted forms: {"type": "two_objective", "n": 11}; {"type": "simplex", "m": 3, "steps": 4}
    (m defaults to 2); {"type": "explicit", "weights": [[1, 0], [0.5, 0.5]]};
    {"type": "negative", "ts": [0, 1, 2], "m": 2, "positive": 0, "negative": 1};
    or a bare list of weightings (same as "explicit").
    """
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        return explicit(spec)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"a grid spec must be a dict like {{'type': 'two_objective', 'n': 11}} or a list of weightings, got {spec!r}"
        )
    if "type" not in spec:
        raise ConfigError(f"grid spec {dict(spec)!r} has no 'type'; use one of {', '.join(_GRID_TYPES)}")
    kind = spec["type"]
    if kind not in _GRID_TYPES:
        raise UnknownNameError("grid type", str(kind), list(_GRID_TYPES))
    builder, keys = _GRID_TYPES[kind]
    options = {k: v for k, v in spec.items() if k != "type"}
    extra = set(options) - keys
    if extra:
        raise ConfigError(f"grid type {kind!r} does not take {sorted(extra)}; it accepts {sorted(keys)}")
    if kind == "simplex" and "steps" not in options:
        raise ConfigError(
            "grid type 'simplex' needs 'steps' (and optionally 'm', default 2), e.g. {'type': 'simplex', 'm': 3, 'steps': 4}"
        )
    if kind == "simplex":
        options.setdefault("m", 2)
    if kind == "explicit" and "weights" not in options:
        raise ConfigError(
            "grid type 'explicit' needs 'weights', e.g. {'type': 'explicit', 'weights': [[1, 0], [0.5, 0.5]]}"
        )
    return builder(**options)
