"""The validators every config reader shares (one check, one message per kind of value)."""

from __future__ import annotations

import pytest

from moddecode.checks import positive_int
from moddecode.errors import ConfigError
from moddecode.eval.grids import simplex_lattice, two_objective_grid


def test_positive_int():
    assert positive_int(3, "n") == 3 and positive_int(0, "n", minimum=0) == 0
    for bad in (0, -1, True, 1.0, "2", None):
        with pytest.raises(ConfigError, match=r"^batch_size must be a positive integer, got "):
            positive_int(bad, "batch_size")
    with pytest.raises(ConfigError, match=r"^n must be an integer >= 2, got 1$") as info:
        positive_int(1, "n", minimum=2, param="n")
    assert info.value.param == "n"


def test_grids_use_the_shared_check():
    with pytest.raises(ConfigError, match=r"^steps must be a positive integer, got True$"):
        simplex_lattice(2, True)
    with pytest.raises(ConfigError, match=r"^n must be an integer >= 2, got 1$"):
        two_objective_grid(1)
