"""Regenerate docs/reproduction/ from the committed configs: one command, resumable, with progress.

    bash scripts/reproduce.sh            # = .venv/bin/python scripts/reproduce.py
    bash scripts/reproduce.sh --smoke    # 2 prompts x 8 new tokens per config, into runs/repro-smoke/ (a check)

Steps, each printed as it starts and timed:
1. every config in examples/repro/*.yaml is swept into runs/repro/<config> (`moddecode sweep`; a rerun
   resumes from its results.sqlite and recomputes nothing);
2. each run is shipped to docs/reproduction/<config>/: run.json, sweep.yaml, results.jsonl.gz (the rows,
   compressed) and the report (report.html, PNGs) recomputed from that export, so
   `moddecode report docs/reproduction/<config>` regenerates every table from the shipped file;
3. H.1 (scripts/h1_flip_experiment.py -> docs/reproduction/h1.json; reused when present, --redo-h1 reruns,
   resuming from runs/repro/h1-<prompts>.jsonl, one file per prompt count so another count never discards it);
4. docs/reproduction/README.md: the claims table (eval/report/claims.py: explicit rules on paired
   intervals, stated in the page), the hand-written reading of the results (examples/repro/discussion.md,
   flagged on the page when the runs it was written for have changed), then each run's tables and H.1's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from moddecode.eval.report import summarize, write_report
from moddecode.eval.report.claims import (claims_markdown, frontier_claim, h1_claim, negative_weights_claim,
                                          theory_claims)
from moddecode.eval.report.markdown import h1_markdown, run_markdown
from moddecode.eval.store import export_rows
from moddecode.eval.sweep import load_sweep_config, run_sweep
from moddecode.eval.sweep.layout import CONFIG_COPY, EXPORT_FILE, RUN_FILE, STORE_FILE

ROOT = Path(__file__).resolve().parent.parent
CLAIM_TEXT = {"frontier": ("MOD's frontier beats RS's (Fig. 1-3, Table 4)", 2),
              "three_objectives": ("the same with three objectives (Fig. 3, Table 4)", 3),
              "divergence": ("MOD works under other f-divergences: JSD, alpha (App. D, Table 6)", 2)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def smoke(cfg):
    """The same sweep on 2 prompts with 8 new tokens (a pipeline check, not a result)."""
    return dataclasses.replace(cfg, name=cfg.name + "-smoke", prompts=cfg.prompts[:2],
                               decoding={**cfg.decoding, "max_new_tokens": 8})


def ready(path: Path) -> bool:
    """Whether a config can run; one whose files are missing (e.g. adapters not trained yet) is skipped with
    the reason, and the page keeps its last shipped run or marks its claim 'not run'."""
    from moddecode.errors import ConfigError
    from moddecode.eval.local_files import check_policy_set_paths

    try:
        check_policy_set_paths(load_sweep_config(path).policy_set)
    except ConfigError as e:
        log(f"skip {path.name}: {e} (the adapters come from scripts/train_bundled_adapters.sh)")
        return False
    return True


def portable(info: dict) -> dict:
    """run.json with the paths inside this repository made relative to it (a shipped run names no machine)."""
    def relative(text):
        path = Path(os.path.normpath(text)) if isinstance(text, str) and os.path.isabs(text) else None
        return str(path.relative_to(ROOT)) if path is not None and path.is_relative_to(ROOT) else text

    policies = [{k: relative(v) for k, v in p.items()} for p in info.get("policies", [])]
    return {**info, "policies": policies, "prompts_source": relative(info.get("prompts_source"))}


def sweep_and_ship(path: Path, runs: Path, docs: Path, args) -> Path:
    cfg = load_sweep_config(path)
    cfg = smoke(cfg) if args.smoke else cfg
    run_dir, ship = runs / path.stem, docs / path.stem
    start = time.time()
    result = run_sweep(cfg, run_dir, progress=not args.no_progress, config_text=path.read_text(), log=log)
    log(f"  {path.stem}: {result.total} rows, {result.already_done} already done, {result.added} added in "
        f"{time.time() - start:.0f} s")
    ship.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / CONFIG_COPY, ship / CONFIG_COPY)
    (ship / RUN_FILE).write_text(json.dumps(portable(json.loads((run_dir / RUN_FILE).read_text())), indent=2,
                                            ensure_ascii=False))
    (ship / STORE_FILE).unlink(missing_ok=True)  # the report must read the shipped export
    count = export_rows(run_dir / STORE_FILE, result.config_hash, ship / EXPORT_FILE)
    files = write_report(ship, ship)
    log(f"  shipped {count} rows to {ship / EXPORT_FILE} ({(ship / EXPORT_FILE).stat().st_size // 1024} KiB); "
        f"report {files.html}")
    return ship


def run_h1(docs: Path, args) -> dict | None:
    out = docs / "h1.json"
    if args.skip_h1:
        return json.loads(out.read_text()) if out.is_file() else None
    if out.is_file() and not args.redo_h1:
        log(f"H.1: reusing {out} (pass --redo-h1 to rerun)")
        return json.loads(out.read_text())
    prompts, tokens = (2, 8) if args.smoke else (args.h1_prompts, args.h1_tokens)
    log(f"H.1: scripts/h1_flip_experiment.py --prompts {prompts} -n {tokens}")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "h1_flip_experiment.py"), "--prompts", str(prompts),
                    "-n", str(tokens), "--json", str(out), "--resume", str(args.runs / f"h1-{prompts}.jsonl")],
                   check=True, cwd=ROOT)
    return json.loads(out.read_text())


def claims_for(summaries: dict, h1: dict | None) -> list:
    claims = theory_claims()
    for stem, s in summaries.items():
        for kind in s.info.get("report", {}).get("claims", []):
            ours = f"`{stem}/`"
            if kind == "negative_weights":
                claims.append(negative_weights_claim(s, ours))
            else:
                paper, min_positive = CLAIM_TEXT[kind]
                claims.append(frontier_claim(s, stem, paper, ours, min_positive=min_positive))
    claims.append(h1_claim(h1))
    return claims


def discussion(path: Path, summaries: dict) -> list[str]:
    """The hand-written reading of the results, with a warning when the runs it names (its first line:
    `<!-- runs: stem=config_hash ... -->`) are not the runs on the page."""
    if not path.is_file():
        return []
    text = path.read_text()
    first = text.splitlines()[0] if text else ""
    written_for = dict(item.split("=", 1) for item in first.removeprefix("<!-- runs:").removesuffix("-->").split()
                       if "=" in item) if first.startswith("<!-- runs:") else {}
    now = {stem: s.info["config_hash"] for stem, s in summaries.items()}
    changed = sorted(stem for stem in set(written_for) | set(now) if written_for.get(stem) != now.get(stem))
    warning = ([f"> **Written for other runs**: {', '.join(changed)} changed since this reading was written "
                f"({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}); its numbers may not match "
                "the tables below.", ""] if changed else [])
    return ["## Reading the results", "", *warning, text.strip(), ""]


def write_page(docs: Path, summaries: dict, h1: dict | None, args) -> Path:
    claims = claims_for(summaries, h1)
    parts = ["# Reproduction in miniature: MOD vs Rewarded Soups on the bundled adapters", "",
             "Generated by `bash scripts/reproduce.sh` from the configs in `examples/repro/`"
             + (" (**--smoke: 2 prompts x 8 tokens, a pipeline check, not a result**)" if args.smoke else "")
             + ". Each run folder ships its rows (`results.jsonl.gz`); `moddecode report docs/reproduction/<run>` "
             "recomputes every table from them. Objectives are normalised by the single adapters' range before "
             "any w-weighted score or win rate; differences are paired over prompts (same prompts, bootstrap "
             "seed 0). The adapters and their own held-out evaluation: `scripts/eval_adapters.py` "
             "(`adapters_eval.json`).", "", "## The paper's claims, side by side", "", claims_markdown(claims)]
    parts += discussion(args.configs / "discussion.md", summaries) + ["## Runs", ""]
    parts += [run_markdown(s, s.info["name"], stem) for stem, s in summaries.items()]
    if h1:
        parts += ["## H.1: flip the sign of Q and K in the last two layers", "", h1_markdown(h1)]
    docs.mkdir(parents=True, exist_ok=True)
    page = docs / "README.md"
    page.write_text("\n".join(parts))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=Path, default=ROOT / "examples" / "repro")
    parser.add_argument("--runs", type=Path, default=None,
                        help="where the sweeps resume from (default runs/repro; with --smoke runs/repro-smoke)")
    parser.add_argument("--docs", type=Path, default=None, help="the page and shipped runs (default "
                        "docs/reproduction; with --smoke runs/repro-smoke/docs, so a smoke never replaces results)")
    parser.add_argument("--only", nargs="*", default=None, help="config stems to sweep (the page uses all shipped)")
    parser.add_argument("--smoke", action="store_true", help="2 prompts x 8 new tokens per config")
    parser.add_argument("--skip-h1", action="store_true", help="use docs/h1.json if present, never run H.1")
    parser.add_argument("--redo-h1", action="store_true")
    parser.add_argument("--h1-prompts", type=int, default=100,
                        help="H.1's held-out prompts (default 100, the sweeps' count: its 4 x 11 x N decodes of two "
                        "full models and their scoring take about an hour on 2 CPU cores at 100)")
    parser.add_argument("--h1-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    args.runs = args.runs or ROOT / "runs" / ("repro-smoke" if args.smoke else "repro")
    args.docs = args.docs or (args.runs / "docs" if args.smoke else ROOT / "docs" / "reproduction")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    configs = sorted(args.configs.glob("*.yaml"))
    todo = [c for c in configs if args.only is None or c.stem in args.only]
    todo = [c for c in todo if ready(c)]
    total = time.time()
    for i, path in enumerate(todo, 1):
        log(f"[{i}/{len(todo)}] sweep {path.name}")
        sweep_and_ship(path, args.runs, args.docs, args)
    # the page: every config's shipped run (those not swept this time as they were last shipped)
    summaries = {c.stem: summarize(args.docs / c.stem) for c in configs if (args.docs / c.stem / EXPORT_FILE).is_file()}
    h1 = run_h1(args.docs, args)
    page = write_page(args.docs, summaries, h1, args)
    log(f"wrote {page} in {time.time() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
