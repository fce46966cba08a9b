"""The package does not force one torch build on its users; the set-up script pins the one CI tests."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def torch_requirement() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "torch")


def test_torch_is_a_range_that_contains_the_tested_version():
    spec = torch_requirement().specifier
    assert not any(s.operator in ("==", "===") for s in spec), f"torch is pinned in pyproject.toml: {spec}"
    tested = Version(torch.__version__.split("+")[0])
    assert spec.contains(tested), f"the torch CI runs ({tested}) is outside the declared range {spec}"
    # a user's CUDA build of the same release (a local version label) must satisfy it too
    assert spec.contains(Version(f"{tested}+cu128"))


def test_setup_script_pins_the_cpu_build_it_tests():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pins = re.findall(r"pip install[^\n]*\btorch==([\d.]+)", setup)
    assert pins and torch_requirement().specifier.contains(Version(pins[0]))
