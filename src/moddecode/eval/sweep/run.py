"""`run_sweep`: produce every missing row of a sweep into its run folder, resumably."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..local_files import check_policy_set_paths
from ..store import ResultStore, result_key
from .backends import make_backend
from .config import SweepConfig
from .layout import CONFIG_COPY, STORE_FILE, read_run_file, write_run_file
from .plan import make_batches, plan_jobs


@dataclass(frozen=True)
class SweepSummary:
    run_dir: Path
    config_hash: str
    total: int  # rows in the plan
    already_done: int  # finished before this call
    added: int  # rows this call wrote
    seconds: float
    skipped: dict[str, str]  # method -> reason


def where_rows_run(config: SweepConfig, backend: str) -> str:
    """This machine's device for the sweep's models (local backend), e.g. 'NVIDIA H200, torch 2.11.0+cu130'."""
    from ...policy import default_device, describe_device

    if backend != "local":
        return f"{backend} workers"
    return describe_device(default_device(config.policy_set.get("device")))


def run_sweep(config: SweepConfig, run_dir: str | Path, *, backend: str = "local", workers: int = 1,
              ray_address: str | None = None, progress: bool = True, config_text: str | None = None,
              log=print) -> SweepSummary:
    """Produce every missing row of `config` into RUN_DIR/results.sqlite; rerun to resume after a kill.

    Each batch is generated, scored and committed in one transaction, so a kill loses at most the
    batches in flight, and a rerun skips every committed row (nothing is recomputed or duplicated).
    """
    start = time.time()
    runner = make_backend(backend, config, workers=workers, address=ray_address)  # fails early, e.g. no Ray
    # before anything is written or loaded: the files must be there, and their contents go into the hash
    check_policy_set_paths(config.policy_set)
    payload = config.config_hash_payload()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    skipped = {"RS": config.rs_skip_reason} if "rs" in config.methods and config.rs_skip_reason else {}
    for method, reason in skipped.items():
        log(reason)
    if config_text is not None:
        (run_dir / CONFIG_COPY).write_text(config_text)
    with ResultStore(run_dir / STORE_FILE) as store:
        chash = store.put_config(payload)
        previous = read_run_file(run_dir)
        if previous and previous.get("config_hash") != chash:
            log(f"the config or the model files it names changed since the last sweep in {run_dir} (hash "
                f"{previous.get('config_hash')} -> {chash}); its rows stay in the store, and this run starts its "
                "own row set")
        ran_on = list(previous.get("ran_on", [])) if previous and previous.get("config_hash") == chash else []
        write_run_file(run_dir, config, chash, skipped, seconds=None, ran_on=ran_on)
        plan = plan_jobs(config)
        done = store.done_keys(chash)
        todo = [j for j in plan if result_key(j.prompt_id, j.method, j.weights) not in done]
        already = len(plan) - len(todo)
        added = 0
        if todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(plan), initial=already, unit="row", desc=f"sweep {config.name}",
                       disable=not progress, dynamic_ncols=True, smoothing=0.1)
            try:
                here = where_rows_run(config, backend)
                for rows in runner.run(make_batches(todo, config.batch_size)):
                    added += store.add_many({**r, "config_hash": chash} for r in rows)
                    if added and here not in ran_on:  # said with the first rows, so a killed run still says it
                        ran_on.append(here)
                        write_run_file(run_dir, config, chash, skipped, seconds=None, ran_on=ran_on)
                    bar.update(len(rows))
            finally:
                bar.close()
        seconds = time.time() - start
        write_run_file(run_dir, config, chash, skipped, seconds=seconds, ran_on=ran_on)
    return SweepSummary(run_dir, chash, len(plan), already, added, seconds, skipped)
