"""`moddecode sweep` and `moddecode report`; `register(app)` adds them to a Typer app (the main CLI's)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import run_guarded

SWEEP_HELP = (
    "Run an evaluation sweep: every prompt x method (MOD, RS, each single policy) x weighting.\n\n"
    "CONFIG is a YAML file with policies, divergence(s), decoding, prompts, scorers (one per policy) and a weight "
    "grid; see examples/sweep.yaml and the schema in moddecode.eval.sweep.\n\n"
    "Results go to OUT/results.sqlite (default OUT: runs/NAME), one row per prompt x method x weighting under the "
    "config hash. Interrupt it at any moment and run the same command again: it resumes, and recomputes or "
    "duplicates nothing. Then run `moddecode report OUT`."
)

REPORT_HELP = (
    "Write plots and an HTML report for a sweep run.\n\n"
    "RUN is the run folder `moddecode sweep` wrote (default runs/NAME): it holds run.json (the plan and config "
    "hash), results.sqlite (the rows) and sweep.yaml (the config as given). A shipped run (docs/reproduction/<run>) "
    "holds results.jsonl.gz instead of results.sqlite; the report reads it the same way.\n\n"
    "Writes OUT/report.html (self-contained, plots embedded) and OUT/frontier_*.png (default OUT: RUN/report)."
)


def sweep(
    config: Path = typer.Argument(..., help="Sweep config YAML (see examples/sweep.yaml)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/NAME, NAME from the config)."),
    backend: str = typer.Option("local", "--backend", "-b", help="local (this process) or ray (needs the ray extra of moddecode)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray actors, each loading the policies once (default 2)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Existing Ray cluster (default: start a local one)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Rows per generate call (overrides the config)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads in this process."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with rate and ETA."),
    report: bool = typer.Option(False, "--report", help="Write the report when the sweep is complete."),
) -> None:
    def go():
        import dataclasses

        from ..errors import ConfigError
        from ..eval.sweep import load_sweep_config, run_sweep

        cfg = load_sweep_config(config)
        if batch_size is not None:
            if batch_size < 1:
                raise ConfigError(f"--batch-size must be a positive integer, got {batch_size}")
            cfg = dataclasses.replace(cfg, batch_size=batch_size)
        if backend == "local" and workers not in (None, 1):
            raise ConfigError("--workers applies to --backend ray; the local backend runs in this process")
        if threads is not None:
            import torch

            torch.set_num_threads(max(1, threads))
        run_dir = out or Path("runs") / cfg.name
        summary = run_sweep(cfg, run_dir, backend=backend, workers=workers or (2 if backend == "ray" else 1),
                            ray_address=ray_address, progress=progress, config_text=config.read_text(),
                            log=lambda msg: typer.echo(msg, err=True))
        typer.echo(f"{summary.total} rows planned, {summary.already_done} already done, {summary.added} added in "
                   f"{summary.seconds:.1f} s -> {run_dir / 'results.sqlite'} (config {summary.config_hash})")
        if report:
            from ..eval.report import write_report

            typer.echo(f"report: {write_report(run_dir).html}")
        else:
            typer.echo(f"next: moddecode report {run_dir}")

    run_guarded(go)


def report(
    run: Path = typer.Argument(..., help="Run folder written by `moddecode sweep` (holds run.json, results.sqlite)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write report.html and the PNGs (default RUN/report)."),
) -> None:
    def go():
        from ..eval.report import write_report

        files = write_report(run, out)
        typer.echo(f"report: {files.html}")
        for png in files.pngs:
            typer.echo(f"plot: {png}")

    run_guarded(go)


def register(app: typer.Typer) -> None:
    """Add `sweep` and `report` to `app`."""
    app.command("sweep", help=SWEEP_HELP)(sweep)
    app.command("report", help=REPORT_HELP)(report)
