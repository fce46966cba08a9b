"""A sweep's run folder, as `moddecode sweep` writes it and `moddecode report` reads it.

    RUN_DIR/run.json         the plan: name, config hash, objectives, methods, weightings, prompts, ...
    RUN_DIR/results.sqlite   the rows (eval.store.ResultStore), keyed by config hash
    RUN_DIR/sweep.yaml       the config as given
    RUN_DIR/results.jsonl.gz a shipped run's rows (eval.store.export_rows), read when results.sqlite is absent

This module imports nothing else of the sweep, so the report depends on the layout alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN_FILE, STORE_FILE, CONFIG_COPY = "run.json", "results.sqlite", "sweep.yaml"
EXPORT_FILE = "results.jsonl.gz"  # a run's rows, compressed, for shipping: the report reads it when there is no store
SINGLE_PREFIX = "single:"  # method name of a policy decoded alone: "single:<policy name>"


def read_run_file(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_run_file(run_dir: Path, config, chash: str, skipped: dict, seconds: float | None,
                   ran_on: list[str] | None = None) -> None:
    """run.json: what `moddecode report` needs to find and label this run's rows (`config`: a SweepConfig).

    `ran_on`: the machines that produced its rows (greedy texts can differ in rare near-ties between devices).
    """
    info: dict[str, Any] = {
        "name": config.name, "config_hash": chash, "store": STORE_FILE, "objectives": list(config.objectives),
        "columns": list(config.columns),
        "policies": config.policy_set["policies"], "divergences": list(config.divergences),
        "methods": config.method_names(), "skipped": skipped, "weightings": [list(w) for w in config.weightings],
        "prompts": [{"id": i, "prompt": t} for i, t in config.prompts], "prompts_source": config.prompts_source,
        "decoding": config.decoding, "scorers": list(config.scorers), "rs_merge": config.rs_merge,
        "report": config.report, "last_sweep_seconds": seconds, "ran_on": list(ran_on or []),
    }
    run_dir = Path(run_dir)
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False))
    tmp.replace(run_dir / RUN_FILE)  # atomic: a kill never leaves a half-written run.json
