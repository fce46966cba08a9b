"""Pareto fronts and hypervolume of score vectors (one row per method/weighting, one column per objective).

Points are array-likes of shape [n, d]. `maximize` is one bool for all objectives or one per
objective; internally every objective is flipped to "larger is better".

Hypervolume is exact: a sweep for d = 2 and recursive slicing along the last objective for d >= 3
(HSO, While et al. 2006), which for d = 3 is a sum of exact 2-D sweeps. The cost grows quickly with
d and n, which is fine for the tens of weightings a sweep produces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError


def _as_points(points, what: str = "points") -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        return arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ConfigError(f"{what} must be a 2-D array [n_points, n_objectives], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{what} contain NaN or infinite values; drop or fix those rows first")
    return arr


def _signs(maximize: bool | Sequence[bool], d: int) -> np.ndarray:
    """+1 for objectives to maximise, -1 for those to minimise."""
    if isinstance(maximize, (bool, np.bool_)):
        return np.full(d, 1.0 if maximize else -1.0)
    flags = list(maximize)
    if len(flags) != d:
        raise ConfigError(f"maximize has {len(flags)} entries but the points have {d} objectives")
    return np.array([1.0 if f else -1.0 for f in flags])


def pareto_front(points, maximize: bool | Sequence[bool] = True) -> list[int]:
    """Indices (ascending) of the non-dominated points.

    q dominates p when q is at least as good in every objective and strictly better in one.
    Duplicated points do not dominate each other, so all copies of a front point are kept.
    """
    arr = _as_points(points)
    n = arr.shape[0]
    if n == 0:
        return []
    x = arr * _signs(maximize, arr.shape[1])
    keep = []
    for i in range(n):
        ge = np.all(x >= x[i], axis=1)
        gt = np.any(x > x[i], axis=1)
        if not np.any(ge & gt):
            keep.append(i)
    return keep


def _hv2(u: np.ndarray) -> float:
    """Area of the union of boxes [0, u_k] in 2-D (all u > 0): sweep over x, largest first."""
    order = np.argsort(-u[:, 0], kind="stable")
    xs, ys = u[order, 0], u[order, 1]
    area, best_y = 0.0, 0.0
    for k in range(len(xs)):
        best_y = max(best_y, ys[k])
        next_x = xs[k + 1] if k + 1 < len(xs) else 0.0
        area += (xs[k] - next_x) * best_y
    return area


def _hv(u: np.ndarray) -> float:
    """Volume of the union of boxes [0, u_k] (all coordinates > 0), any d >= 1."""
    if u.shape[0] == 0:
        return 0.0
    d = u.shape[1]
    if d == 1:
        return float(u[:, 0].max())
    if d == 2:
        return _hv2(u)
    # Slice along the last objective: between consecutive distinct heights z_k > z_{k+1}, the
    # cross-section is the (d-1)-D union of the boxes whose height is >= z_k.
    u = u[pareto_front(u)]
    heights = np.unique(u[:, -1])[::-1]
    volume = 0.0
    for k, z in enumerate(heights):
        below = heights[k + 1] if k + 1 < len(heights) else 0.0
        volume += (z - below) * _hv(u[u[:, -1] >= z, :-1])
    return volume


def hypervolume(points, reference, maximize: bool | Sequence[bool] = True) -> float:
    """Exact volume of the region dominated by `points` and bounded by `reference`.

    points: [n, d]; reference: [d], a point worse than the points in every objective (for
    maximisation: below them). Points that are not strictly better than the reference in every
    objective add nothing. Returns 0.0 for an empty set.
    """
    arr = _as_points(points)
    ref = np.asarray(reference, dtype=np.float64)
    if arr.shape[0] == 0:
        return 0.0
    d = arr.shape[1]
    if ref.shape != (d,):
        raise ConfigError(f"reference must have one value per objective ({d}), got shape {ref.shape}")
    if not np.all(np.isfinite(ref)):
        raise ConfigError(f"reference must be finite, got {ref.tolist()}")
    # Distances from the reference in the "better" direction; only positive boxes have volume.
    u = (arr - ref) * _signs(maximize, d)
    u = u[np.all(u > 0, axis=1)]
    return float(_hv(u))
