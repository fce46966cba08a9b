"""Weight grids: exact decimal entries, correct counts, and clear errors."""

from __future__ import annotations

import math

import pytest

from moddecode.errors import ConfigError, UnknownNameError
from moddecode.eval import explicit, negative_line, parse_grid, simplex_lattice, two_objective_grid


def test_two_objective_grid_is_the_papers_grid():
    grid = two_objective_grid(11)
    assert len(grid) == 11
    assert grid[0] == (0.0, 1.0) and grid[-1] == (1.0, 0.0)
    assert grid[3] == (0.3, 0.7)  # not 0.30000000000000004
    assert [w[0] for w in grid] == [i / 10 for i in range(11)]
    assert all(w[0] + w[1] == 1.0 for w in grid)
    assert two_objective_grid(2) == [(0.0, 1.0), (1.0, 0.0)]


def test_simplex_lattice_counts_and_sums():
    for m, steps in [(2, 10), (3, 4), (4, 3), (1, 5)]:
        grid = simplex_lattice(m, steps)
        assert len(grid) == math.comb(steps + m - 1, m - 1)
        assert len(set(grid)) == len(grid)
        for w in grid:
            assert len(w) == m and min(w) >= 0
            assert math.isclose(sum(w), 1.0, abs_tol=1e-12)
            assert all(round(x * steps, 9) == round(x * steps) for x in w)  # multiples of 1/steps
    assert simplex_lattice(2, 10) == two_objective_grid(11)
    assert (0.25, 0.25, 0.5) in simplex_lattice(3, 4)


def test_negative_line_matches_table_1():
    assert negative_line() == [(1.0, 0.0), (2.0, -1.0), (3.0, -2.0), (4.0, -3.0), (5.0, -4.0)]
    line = negative_line([0.5], m=3, positive=2, negative=0)
    assert line == [(-0.5, 0.0, 1.5)]
    with pytest.raises(ConfigError, match="different"):
        negative_line(m=2, positive=1, negative=1)
    with pytest.raises(ConfigError, match="index"):
        negative_line(m=2, negative=2)


def test_explicit_validates():
    assert explicit([[1, 0], [0.5, 0.5]]) == [(1.0, 0.0), (0.5, 0.5)]
    with pytest.raises(ConfigError, match="same length"):
        explicit([[1, 0], [0.2, 0.3, 0.5]])
    with pytest.raises(ConfigError, match="finite"):
        explicit([[float("nan"), 1]])
    with pytest.raises(ConfigError, match="number"):
        explicit([["a", 1]])


def test_parse_grid_specs():
    assert parse_grid({"type": "two_objective", "n": 5}) == two_objective_grid(5)
    assert parse_grid({"type": "simplex", "steps": 4}) == simplex_lattice(2, 4)
    assert parse_grid({"type": "simplex", "m": 3, "steps": 2}) == simplex_lattice(3, 2)
    assert parse_grid({"type": "explicit", "weights": [[0.1, 0.9]]}) == [(0.1, 0.9)]
    assert parse_grid({"type": "negative", "ts": [0, 1]}) == [(1.0, 0.0), (2.0, -1.0)]
    assert parse_grid([[0.2, 0.8]]) == [(0.2, 0.8)]


def test_parse_grid_errors():
    with pytest.raises(UnknownNameError, match="Did you mean 'simplex'"):
        parse_grid({"type": "simplx", "steps": 3})
    with pytest.raises(ConfigError, match="accepts"):
        parse_grid({"type": "two_objective", "steps": 3})
    with pytest.raises(ConfigError, match="'type'"):
        parse_grid({"n": 3})
    with pytest.raises(ConfigError, match="steps"):
        parse_grid({"type": "simplex"})
    with pytest.raises(ConfigError, match="n must be"):
        parse_grid({"type": "two_objective", "n": 1})
