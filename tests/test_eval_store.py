"""Result store: round trips, resume keys, idempotent inserts, and atomic batches under SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from moddecode.errors import ConfigError
from moddecode.eval import ResultRow, ResultStore, config_hash, result_key, weights_key


def row(h, pid, method="MOD", w=(0.3, 0.7), resp="text", scores=None):
    return {
        "config_hash": h,
        "prompt_id": pid,
        "method": method,
        "weights": w,
        "response": resp,
        "scores": scores or {"helpful": 1.5, "harmless": -0.5},
    }


def test_config_hash_is_stable():
    a = {"models": ["x", "y"], "grid": {"type": "simplex", "steps": 4}, "beta": 0.1}
    b = {"beta": 0.1, "grid": {"steps": 4, "type": "simplex"}, "models": ("x", "y")}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "beta": 0.2})
    with pytest.raises(ConfigError, match="JSON"):
        config_hash({"f": object()})
    with pytest.raises(ConfigError, match="JSON"):
        config_hash({"x": float("nan")})


def test_weights_key_canonical():
    assert weights_key((0.1 + 0.2, 0.7)) == "0.3,0.7"
    assert weights_key([-0.0, 1]) == weights_key((0.0, 1.0))
    with pytest.raises(ConfigError):
        weights_key(["a"])


def test_insert_reopen_resume_and_ignore_duplicates(tmp_path):
    path = tmp_path / "sub" / "results.sqlite"
    with ResultStore(path) as store:
        h = store.put_config({"run": 1})
        assert store.put_config({"run": 1}) == h and store.config(h) == {"run": 1}
        assert store.add_many([row(h, 0), row(h, 1), row(h, 1, method="RS")]) == 3
        assert store.add_many([row(h, 0, resp="different"), row(h, 2)]) == 1  # (h, 0, MOD, w) exists
        assert store.add_many([]) == 0
        other = config_hash({"run": 2})
        store.add_many([row(other, 0)])
    with ResultStore(path) as store:
        assert store.count() == 5 and store.count(h) == 4
        assert store.done_keys(h) == {
            result_key(p, m, (0.3, 0.7)) for p, m in [(0, "MOD"), (1, "MOD"), (1, "RS"), (2, "MOD")]
        }
        rows = store.rows(h)
        assert [r.prompt_id for r in rows] == ["0", "1", "1", "2"]
        first = rows[0]
        assert isinstance(first, ResultRow)
        assert first.response == "text" and first.weights == (0.3, 0.7)
        assert first.scores == {"helpful": 1.5, "harmless": -0.5}
        assert first.as_record()["weights"] == (0.3, 0.7)
        assert store.done_keys("unknown") == set()


def test_bad_rows_write_nothing(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(ConfigError, match="missing"):
            store.add_many([row("h", 0), {"config_hash": "h", "prompt_id": 1}])
        with pytest.raises(ConfigError, match="numbers"):
            store.add_many([row("h", 0, scores={"a": "high"})])
        assert store.count() == 0
    with pytest.raises(ConfigError, match="folder"):
        ResultStore(tmp_path)


WRITER = textwrap.dedent(
    """
    import sys
    from moddecode.eval import ResultStore
    path, batch_size = sys.argv[1], int(sys.argv[2])
    store = ResultStore(path)
    b = 0
    while True:
        # every batch also re-adds the previous batch's rows: they must be ignored, never duplicated
        rows = [dict(config_hash="h", prompt_id=f"{c}-{i}", method="MOD", weights=(0.5, 0.5),
                     response="x" * 200, scores={"s": float(i)})
                for c in (b, max(b - 1, 0)) for i in range(batch_size)]
        store.add_many(rows)
        if b == 2:
            print("ready", flush=True)
        b += 1
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.13])
def test_sigkill_mid_write_leaves_whole_batches(tmp_path, delay):
    path = tmp_path / "killed.sqlite"
    batch = 400
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(batch)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with ResultStore(path) as store:
        keys = [r.prompt_id for r in store.rows("h")]
        assert len(keys) == len(set(keys))  # no duplicates
        per_batch: dict[str, int] = {}
        for k in keys:
            per_batch[k.split("-")[0]] = per_batch.get(k.split("-")[0], 0) + 1
        assert len(per_batch) >= 3
        assert set(per_batch.values()) == {batch}  # every batch is complete
        assert sorted(map(int, per_batch)) == list(range(len(per_batch)))  # committed in order, none lost
        # resuming: re-adding everything adds nothing new
        assert store.add_many(row("h", k) | {"weights": (0.5, 0.5)} for k in keys) == 0
