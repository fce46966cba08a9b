"""A durable SQLite store of sweep results, so an interrupted sweep resumes where it stopped.

One row per (config_hash, prompt_id, method, weights_key), enforced by a UNIQUE constraint. Rows are
written in batches, each batch in one transaction with INSERT OR IGNORE, in WAL mode with
synchronous=FULL: if the process is killed at any moment, every committed batch is complete, the
batch in flight is lost as a whole, and re-adding rows never duplicates them.

Typical loop:
    store = ResultStore("results.sqlite"); h = store.put_config(cfg)
    done = store.done_keys(h)
    todo = [job for job in jobs if result_key(job.prompt_id, job.method, job.weights) not in done]
    ... generate + score a batch ... ; store.add_many(rows)
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id          INTEGER PRIMARY KEY,
    config_hash TEXT NOT NULL,
    prompt_id   TEXT NOT NULL,
    method      TEXT NOT NULL,
    weights_key TEXT NOT NULL,
    response    TEXT NOT NULL,
    scores      TEXT NOT NULL,  -- JSON object: objective -> float
    created_at  REAL NOT NULL,  -- unix time
    UNIQUE (config_hash, prompt_id, method, weights_key)
);
CREATE TABLE IF NOT EXISTS configs (
    config_hash TEXT PRIMARY KEY,
    config      TEXT NOT NULL   -- canonical JSON of the run config
);
"""


def _canonical_json(obj) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"the run config must be plain JSON data (dicts, lists, str, finite numbers, bool, None): {e}"
        ) from None


def config_hash(obj) -> str:
    """Stable 16-hex-digit hash of a JSON-like config: key order and tuple-vs-list do not matter."""
    return hashlib.sha256(_canonical_json(obj).encode("utf-8")).hexdigest()[:16]


def weights_key(weights: Sequence[float]) -> str:
    """Canonical text of a weighting, e.g. (0.1 + 0.2, 0.7) -> "0.3,0.7" (12 significant decimals)."""
    try:
        vals = [round(float(w), 12) + 0.0 for w in weights]  # + 0.0 maps -0.0 to 0.0
    except (TypeError, ValueError):
        raise ConfigError(f"weights must be a list of numbers, got {weights!r}") from None
    if not vals or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"weights must be a non-empty list of finite numbers, got {weights!r}")
    return ",".join(repr(v) for v in vals)


def parse_weights_key(key: str) -> tuple[float, ...]:
    """Inverse of `weights_key`."""
    return tuple(float(v) for v in key.split(","))


def result_key(prompt_id, method: str, weights: Sequence[float]) -> tuple[str, str, str]:
    """The (prompt_id, method, weights_key) triple that `done_keys` returns; prompt ids are stored as text."""
    return (str(prompt_id), str(method), weights_key(weights))


@dataclass(frozen=True)
class ResultRow:
    """One scored response. `weights` is the decoding weighting; `scores` maps objective -> float."""

    config_hash: str
    prompt_id: str
    method: str
    weights: tuple[float, ...]
    response: str
    scores: dict[str, float]
    created_at: float = field(default_factory=time.time)

    def as_record(self) -> dict:
        """The dict layout `moddecode.eval.metrics` consumes."""
        return {
            "prompt_id": self.prompt_id,
            "method": self.method,
            "weights": self.weights,
            "scores": dict(self.scores),
        }


def _row_tuple(row: ResultRow | Mapping) -> tuple:
    get = row.get if isinstance(row, Mapping) else (lambda k, d=None: getattr(row, k, d))
    missing = [k for k in ("config_hash", "prompt_id", "method", "weights", "response", "scores") if get(k) is None]
    if missing:
        raise ConfigError(f"result row is missing {missing}: {row!r}")
    scores = get("scores")
    if not isinstance(scores, Mapping):
        raise ConfigError(f"result row scores must be a dict objective -> float, got {scores!r}")
    try:
        scores_json = json.dumps({str(k): float(v) for k, v in scores.items()}, sort_keys=True)
    except (TypeError, ValueError):
        raise ConfigError(f"result row scores must be numbers, got {scores!r}") from None
    return (
        str(get("config_hash")),
        str(get("prompt_id")),
        str(get("method")),
        weights_key(get("weights")),
        str(get("response")),
        scores_json,
        float(get("created_at") or time.time()),
    )


class ResultStore:
    """Results of evaluation sweeps in one SQLite file (created if missing). Usable as a context manager."""

    def __init__(self, path: str | Path, timeout_s: float = 30.0):
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"result store path {str(self.path)!r} is a folder; pass a file path like results.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so a batch is exactly one transaction.
        self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL also survives power loss; the cost (one fsync per batch) is nothing next to generation.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def put_config(self, config) -> str:
        """Record a run config and return its hash (idempotent)."""
        h = config_hash(config)
        with self._transaction():
            self._conn.execute(
                "INSERT OR IGNORE INTO configs (config_hash, config) VALUES (?, ?)", (h, _canonical_json(config))
            )
        return h

    def config(self, config_hash: str):
        """The config stored under `config_hash`, or None."""
        row = self._conn.execute("SELECT config FROM configs WHERE config_hash = ?", (config_hash,)).fetchone()
        return None if row is None else json.loads(row[0])

    def add_many(self, rows: Iterable[ResultRow | Mapping]) -> int:
        """Insert rows in one transaction; rows whose key already exists are skipped. Returns how many were new."""
        tuples = [_row_tuple(r) for r in rows]  # validate everything before writing anything
        if not tuples:
            return 0
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO results (config_hash, prompt_id, method, weights_key, response, scores, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                tuples,
            )
            return self._conn.total_changes - before

    def done_keys(self, config_hash: str) -> set[tuple[str, str, str]]:
        """{(prompt_id, method, weights_key)} already stored for this config; compare with `result_key(...)`."""
        cur = self._conn.execute(
            "SELECT prompt_id, method, weights_key FROM results WHERE config_hash = ?", (config_hash,)
        )
        return {tuple(r) for r in cur}

    def rows(self, config_hash: str) -> list[ResultRow]:
        """All rows of a config, in insertion order."""
        cur = self._conn.execute(
            "SELECT config_hash, prompt_id, method, weights_key, response, scores, created_at FROM results"
            " WHERE config_hash = ? ORDER BY id",
            (config_hash,),
        )
        return [
            ResultRow(h, pid, m, parse_weights_key(wk), resp, json.loads(sc), t) for h, pid, m, wk, resp, sc, t in cur
        ]

    def count(self, config_hash: str | None = None) -> int:
        """Number of stored rows (of one config, or in total)."""
        if config_hash is None:
            return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self._conn.execute("SELECT COUNT(*) FROM results WHERE config_hash = ?", (config_hash,)).fetchone()[0]

    def _transaction(self):
        return _Transaction(self._conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (so no partial batch is ever visible)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False


def export_rows(store_path: str | Path, config_hash: str, out_path: str | Path) -> int:
    """Write one config's rows (and the config) as gzip-compressed JSON lines; returns the row count.

    The bytes depend on the rows alone (no timestamps in the gzip header), so a re-export of the same
    rows is the same file. `read_export` reads it back.
    """
    import gzip

    with ResultStore(store_path) as store:
        rows, config = store.rows(config_hash), store.config(config_hash)
    lines = [_canonical_json({"config_hash": config_hash, "config": config})]
    lines += [_canonical_json({"prompt_id": r.prompt_id, "method": r.method, "weights": list(r.weights),
                               "response": r.response, "scores": r.scores}) for r in rows]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    Path(out_path).write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    return len(rows)


def read_export(path: str | Path) -> tuple[str, dict | None, list[ResultRow]]:
    """(config hash, config, rows) of a file `export_rows` wrote."""
    import gzip

    try:
        lines = gzip.decompress(Path(path).read_bytes()).decode("utf-8").splitlines()
        head = json.loads(lines[0])
        rows = [json.loads(line) for line in lines[1:] if line.strip()]
        chash = head["config_hash"]
        return chash, head.get("config"), [ResultRow(chash, r["prompt_id"], r["method"], tuple(r["weights"]),
                                                      r["response"], r["scores"], 0.0) for r in rows]
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise ConfigError(f"{path} is not a results export written by export_rows ({type(e).__name__}: {e})") from None
