"""In CI the playground's browser test must run: a missing browser fails the run instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def run_playground_tests(ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["MODDECODE_CHROMIUM"] = str(TESTS / "no-such-chromium")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           str(TESTS / "test_playground.py")], cwd=TESTS.parent, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(300)
def test_a_missing_browser_skips_locally_but_fails_in_ci():
    local = run_playground_tests(None)
    # 5: pytest's "no tests ran", as the whole module skipped
    assert local.returncode in (0, 5) and "skipped" in local.stdout and "no-such-chromium" in local.stdout, local.stdout
    for ci in ("true", "1"):
        in_ci = run_playground_tests(ci)
        assert in_ci.returncode != 0, in_ci.stdout
        assert "may not be skipped" in in_ci.stdout and "no-such-chromium" in in_ci.stdout, in_ci.stdout
