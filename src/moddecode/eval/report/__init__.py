"""`moddecode report RUN`: metrics, Pareto plots and one self-contained HTML page for a finished sweep.

RUN is the run folder `moddecode sweep` writes: run.json (the plan: objectives, methods, weightings,
prompts, config hash) and results.sqlite (the rows), or a shipped copy with results.jsonl.gz instead of the
store (`eval.store.export_rows`; docs/reproduction/<run>/). The report uses the rows of run.json's config
hash that belong to its plan, so an unfinished sweep still reports what is there (and says so).

Metrics (objectives in policy order, so weight i pairs with objective i):
- objectives normalised by the single policies' range (min/max of their means) before any w-weighted score
  or win rate; extra score columns (e.g. fluency) shown beside every table, never weighted;
- per (method, weighting): mean of each objective with a 95% bootstrap CI, and the w-weighted score;
- the Pareto front of each method's mean points, their hypervolume above a stated reference point, and a
  bootstrap interval on it (prompts resampled, mean points and hypervolume recomputed);
- per weighting, MOD - RS paired over prompts with a bootstrap interval, per objective and w-weighted;
- the w-weighted score table (paper Table 4): weightings x methods, single policies evaluated at every w;
- per-weighting win rates of MOD vs RS (vs each single policy when RS is absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .html import render_html
from .plots import plot_pairs, plot_triples
from .summary import Cell, Summary, load_rows, summarize


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    pngs: list[Path]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> ReportFiles:
    """Write the PNG plots and report.html (plots embedded) to OUT (default RUN/report)."""
    run_dir = Path(run_dir)
    s = summarize(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    pngs = plot_pairs(s, out) + (plot_triples(s, out) if len(s.objectives) >= 3 else [])
    page = out / "report.html"
    page.write_text(render_html(s, pngs), encoding="utf-8")
    return ReportFiles(page, pngs)


__all__ = ["Cell", "Summary", "ReportFiles", "load_rows", "summarize", "plot_pairs", "plot_triples", "render_html",
           "write_report"]
