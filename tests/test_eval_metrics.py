"""Metrics on hand-made records: bootstrap CI, the w-weighted score table, per-weighting win rates."""

from __future__ import annotations

import numpy as np
import pytest

from moddecode.errors import ConfigError
from moddecode.eval import mean_ci, weighted_score, weighted_score_table, win_rates

OBJ = ["helpful", "harmless"]


def rec(pid, method, w, helpful, harmless):
    return {"prompt_id": pid, "method": method, "weights": w, "scores": {"helpful": helpful, "harmless": harmless}}


RECORDS = [
    rec(0, "MOD", (0.5, 0.5), 1.0, 3.0),
    rec(1, "MOD", (0.5, 0.5), 3.0, 1.0),
    rec(0, "RS", (0.5, 0.5), 2.0, 2.0),
    rec(1, "RS", (0.5, 0.5), 0.0, 0.0),
    rec(0, "MOD", (1.0, 0.0), 4.0, -1.0),
    rec(1, "MOD", (1.0, 0.0), 0.0, 9.0),
    rec(0, "RS", (1.0, 0.0), 5.0, 0.0),
    rec(1, "RS", [1.0, 0.0], 0.0, 0.0),  # weights given as a list (e.g. from JSON)
    rec(2, "RS", (1.0, 0.0), 7.0, 7.0),  # no MOD partner: not compared
]


def test_mean_ci_contains_mean_and_is_seeded():
    x = np.random.default_rng(0).normal(2.0, 1.0, size=200)
    ci = mean_ci(x, seed=3)
    assert ci.low < ci.mean < ci.high and ci.n == 200
    assert ci.mean == pytest.approx(float(np.mean(x)))
    assert mean_ci(x, seed=3) == ci
    wider = mean_ci(x, confidence=0.99, seed=3)
    assert wider.low <= ci.low and wider.high >= ci.high
    const = mean_ci([4.0, 4.0, 4.0])
    assert (const.low, const.mean, const.high) == (4.0, 4.0, 4.0)
    assert mean_ci([7.0]) == type(ci)(7.0, 7.0, 7.0, 1)


def test_mean_ci_errors():
    with pytest.raises(ConfigError, match="non-empty"):
        mean_ci([])
    with pytest.raises(ConfigError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)


def test_weighted_score():
    assert weighted_score({"helpful": 2.0, "harmless": -1.0}, (0.25, 0.75), OBJ) == 0.5 - 0.75
    with pytest.raises(ConfigError, match="lacks scores"):
        weighted_score({"helpful": 1.0}, (0.5, 0.5), OBJ)


def test_weighted_score_table_by_hand():
    rows = weighted_score_table(RECORDS, OBJ)
    table = {(r.weights, r.method): r for r in rows}
    assert [(r.weights, r.method) for r in rows] == sorted(table)
    mod = table[((0.5, 0.5), "MOD")]
    assert mod.means == {"helpful": 2.0, "harmless": 2.0} and mod.weighted == 2.0 and mod.n == 2
    rs = table[((0.5, 0.5), "RS")]
    assert rs.means == {"helpful": 1.0, "harmless": 1.0} and rs.weighted == 1.0
    rs1 = table[((1.0, 0.0), "RS")]
    assert rs1.n == 3 and rs1.means["helpful"] == 4.0 and rs1.weighted == 4.0
    mod1 = table[((1.0, 0.0), "MOD")]
    assert mod1.weighted == 2.0 and mod1.means["harmless"] == 4.0  # harmless has weight 0


def test_win_rates_by_hand():
    rates = win_rates(RECORDS, "MOD", "RS", OBJ)
    # w=(.5,.5): prompt 0: 2 vs 2 tie; prompt 1: 2 vs 0 win -> (1 + 0.5)/2.
    half = rates[(0.5, 0.5)]
    assert (half.wins, half.losses, half.ties, half.n, half.rate) == (1, 0, 1, 2, 0.75)
    # w=(1,0): prompt 0: 4 vs 5 loss; prompt 1: 0 vs 0 tie; prompt 2 has no MOD response.
    first = rates[(1.0, 0.0)]
    assert (first.wins, first.losses, first.ties, first.n, first.rate) == (0, 1, 1, 2, 0.25)
    reverse = win_rates(RECORDS, "RS", "MOD", OBJ)
    for w in rates:
        assert rates[w].rate + reverse[w].rate == 1.0


def test_win_rates_errors():
    with pytest.raises(ConfigError, match="duplicate"):
        win_rates(RECORDS + [rec(0, "MOD", (0.5, 0.5), 0, 0)], "MOD", "RS", OBJ)
    with pytest.raises(ConfigError, match="different methods"):
        win_rates(RECORDS, "MOD", "MOD", OBJ)
    with pytest.raises(ConfigError, match="3 weights but 2 objectives"):
        weighted_score_table([rec(0, "MOD", (0.2, 0.3, 0.5), 1, 1)], OBJ)
