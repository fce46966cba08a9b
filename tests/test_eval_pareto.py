"""Pareto fronts and exact hypervolume: hand-made sets, a brute-force cell count, and a d-D reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moddecode.errors import ConfigError
from moddecode.eval import hypervolume, pareto_front


def brute_front(points, signs):
    x = np.asarray(points, float) * signs
    return [i for i in range(len(x)) if not any(np.all(x[j] >= x[i]) and np.any(x[j] > x[i]) for j in range(len(x)))]


def cell_count(points) -> int:
    """Unit cells [c, c+1]^d (c >= 0 integer) covered by some box [0, p]; equals the volume for integer points."""
    pts = np.asarray(points, int)
    top = pts.max(axis=0)
    return sum(
        bool(np.any(np.all(pts >= np.array(cell) + 1, axis=1))) for cell in itertools.product(*(range(t) for t in top))
    )


def inclusion_exclusion(points) -> float:
    """Union of boxes [0, p] by inclusion-exclusion over all subsets (tiny sets only)."""
    pts = np.asarray(points, float)
    total = 0.0
    for k in range(1, len(pts) + 1):
        for subset in itertools.combinations(range(len(pts)), k):
            total += (-1) ** (k + 1) * np.prod(pts[list(subset)].min(axis=0))
    return total


def test_pareto_front_hand_made():
    pts = [(1, 5), (2, 4), (3, 3), (2, 2), (0, 6), (3, 3), (1, 1)]
    assert pareto_front(pts) == [0, 1, 2, 4, 5]  # duplicates (3,3) both kept
    assert pareto_front(pts, maximize=False) == [4, 6]  # (0,6) is best in objective 0
    assert pareto_front(pts, maximize=[True, False]) == [2, 3, 5, 6]  # (2,2) has the lowest y among x >= 2
    assert pareto_front([]) == []


def test_pareto_front_matches_brute_force_3d():
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 5, size=(40, 3))
    for maximize in (True, False, [True, False, True]):
        signs = (
            np.array([1, 1, 1])
            if maximize is True
            else np.array([-1, -1, -1])
            if maximize is False
            else np.array([1, -1, 1])
        )
        assert pareto_front(pts, maximize) == brute_front(pts, signs)


def test_hypervolume_2d_by_hand():
    # Staircase (1,3), (2,2), (3,1) over reference (0,0): 3 + 2 + 1 = 6.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0, 0)) == 6.0
    # A dominated point adds nothing; a point below the reference adds nothing.
    assert hypervolume([(1, 3), (2, 2), (3, 1), (1, 1), (-1, 9)], (0, 0)) == 6.0
    # Shifted reference: boxes [(-1,-1), p].
    assert hypervolume([(1, 1)], (-1, -1)) == 4.0
    # Minimisation mirrors maximisation.
    assert hypervolume([(-1, -3), (-2, -2), (-3, -1)], (0, 0), maximize=False) == 6.0
    assert hypervolume([], (0, 0)) == 0.0


def test_hypervolume_3d_by_hand():
    # Two boxes 2x1x1 and 1x2x1 overlapping in 1x1x1, plus a 1x1x2 box overlapping both in 1x1x1.
    pts = [(2, 1, 1), (1, 2, 1), (1, 1, 2)]
    assert hypervolume(pts, (0, 0, 0)) == 2 + 2 + 2 - 1 - 1 - 1 + 1
    assert hypervolume([(3, 2, 4)], (1, 1, 1)) == 2 * 1 * 3
    assert hypervolume([(1, 1, 1), (1, 1, 1)], (0, 0, 0)) == 1.0


@pytest.mark.parametrize("d,n,seed", [(2, 8, 1), (2, 15, 2), (3, 6, 3), (3, 12, 4), (4, 6, 5)])
def test_hypervolume_equals_cell_count_on_random_integer_sets(d, n, seed):
    pts = np.random.default_rng(seed).integers(1, 6, size=(n, d))
    assert hypervolume(pts, np.zeros(d)) == cell_count(pts)


@pytest.mark.parametrize("d", [3, 4, 5])
def test_hypervolume_matches_inclusion_exclusion_on_real_points(d):
    pts = np.random.default_rng(d).uniform(0.1, 1.0, size=(7, d))
    assert hypervolume(pts, np.zeros(d)) == pytest.approx(inclusion_exclusion(pts), rel=1e-12)


def test_hypervolume_errors():
    with pytest.raises(ConfigError, match="one value per objective"):
        hypervolume([(1, 2)], (0, 0, 0))
    with pytest.raises(ConfigError, match="NaN"):
        hypervolume([(1, float("nan"))], (0, 0))
    with pytest.raises(ConfigError, match="2-D"):
        pareto_front([1, 2, 3])
    with pytest.raises(ConfigError, match="maximize"):
        pareto_front([(1, 2)], maximize=[True])
