"""`moddecode report RUN`: metrics, Pareto plots and one self-contained HTML page for a finished sweep.

RUN is the run folder `moddecode sweep` writes: run.json (the plan: objectives, methods, weightings,
prompts, config hash) and results.sqlite (the rows). The report uses the rows of run.json's config
hash that belong to its plan, so an unfinished sweep still reports what is there (and says so).

Metrics (objectives in policy order, so weight i pairs with objective i):
- per (method, weighting): mean of each objective with a 95% bootstrap CI, and the w-weighted score;
- the Pareto front of each method's mean points, and their hypervolume above a stated reference point;
- the w-weighted score table (paper Table 4): weightings x methods, single policies evaluated at every w;
- per-weighting win rates of MOD vs RS (vs each single policy when RS is absent).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .metrics import MeanCI, WinRate, mean_ci, win_rates
from .pareto import hypervolume, pareto_front
from .store import ResultStore, weights_key
from .sweep import RUN_FILE, SINGLE_PREFIX, STORE_FILE

Weights = tuple[float, ...]
MAX_TRIPLES = 4  # 3-D views drawn for at most this many objective triples


@dataclass(frozen=True)
class Cell:
    """Scores of one method at one weighting over the prompts: per-objective and w-weighted mean with CIs."""

    method: str
    weights: Weights
    means: tuple[MeanCI, ...]
    weighted: MeanCI


@dataclass
class Summary:
    """Everything the report shows, computed from the rows."""

    info: dict
    objectives: list[str]
    methods: list[str]  # methods with rows, in plan order
    weightings: list[Weights]
    cells: dict[tuple[str, Weights], Cell]
    fronts: dict[str, list[Weights]]  # method -> weightings on its Pareto front
    hypervolumes: dict[str, float]
    reference_point: list[float]
    reference_auto: bool
    pivot: list[tuple[Weights, dict[str, float]]]  # weighting -> method -> w-weighted score
    wins: list[tuple[str, str, dict[Weights, WinRate]]]
    rows_present: int
    rows_planned: int
    responses: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (prompt, method, wkey) -> text

    def points(self, method: str) -> tuple[list[Weights], np.ndarray]:
        """A method's weightings and mean score vectors [k, d], in plan order."""
        ws = [w for w in self._weightings_of(method) if (method, w) in self.cells]
        return ws, np.array([[m.mean for m in self.cells[(method, w)].means] for w in ws]).reshape(len(ws), -1)

    def _weightings_of(self, method: str) -> list[Weights]:
        if method.startswith(SINGLE_PREFIX):
            return sorted({w for (m, w) in self.cells if m == method})
        return self.weightings


def load_rows(run_dir: Path) -> tuple[dict, list]:
    """run.json and this run's rows (config hash and plan), with a clear error if RUN is not a run folder."""
    run_dir = Path(run_dir)
    info_path = run_dir / RUN_FILE
    if not info_path.is_file():
        raise ConfigError(f"{run_dir} is not a sweep run folder (no {RUN_FILE}); pass the folder `moddecode sweep` "
                          "wrote, e.g. runs/<name>")
    info = json.loads(info_path.read_text())
    store_path = run_dir / info.get("store", STORE_FILE)
    if not store_path.is_file():
        raise ConfigError(f"{store_path} is missing; rerun `moddecode sweep` for this config")
    with ResultStore(store_path) as store:
        rows = store.rows(info["config_hash"])
    plan_ids = {str(p["id"]) for p in info["prompts"]}
    keys = {weights_key(w) for w in info["weightings"]}
    methods = set(info["methods"])
    rows = [r for r in rows if r.method in methods and r.prompt_id in plan_ids
            and (r.method.startswith(SINGLE_PREFIX) or weights_key(r.weights) in keys)]
    if not rows:
        raise ConfigError(f"no results in {run_dir} for config {info['config_hash']} yet; run `moddecode sweep` first")
    return info, rows


def summarize(run_dir: str | Path) -> Summary:
    """Compute every table of the report from RUN's rows."""
    info, rows = load_rows(Path(run_dir))
    objectives = list(info["objectives"])
    weightings = [tuple(float(x) for x in w) for w in info["weightings"]]
    methods = [m for m in info["methods"] if any(r.method == m for r in rows)]
    groups: dict[tuple[str, Weights], list] = defaultdict(list)
    for r in rows:
        groups[(r.method, tuple(r.weights))].append(r)
    cells = {key: _cell(key, rs, objectives) for key, rs in groups.items()}
    summary = Summary(info, objectives, methods, weightings, cells, {}, {}, [], False, [], [],
                      rows_present=len(rows), rows_planned=_planned(info),
                      responses={(r.prompt_id, r.method, weights_key(r.weights)): r.response for r in rows})
    all_points = np.vstack([summary.points(m)[1] for m in methods])
    ref = info.get("report", {}).get("reference_point")
    summary.reference_auto = ref is None
    summary.reference_point = [float(x) for x in ref] if ref is not None else _auto_reference(all_points)
    for m in methods:
        ws, pts = summary.points(m)
        summary.fronts[m] = [ws[i] for i in pareto_front(pts)]
        summary.hypervolumes[m] = hypervolume(pts, summary.reference_point)
    summary.pivot = _pivot(summary)
    records = [r.as_record() for r in rows]
    summary.wins = _win_tables(records, methods, weightings, objectives)
    return summary


def _planned(info: dict) -> int:
    singles = sum(m.startswith(SINGLE_PREFIX) for m in info["methods"])
    return len(info["prompts"]) * ((len(info["methods"]) - singles) * len(info["weightings"]) + singles)


def _cell(key: tuple[str, Weights], rows: list, objectives: list[str]) -> Cell:
    scores = np.array([[r.scores[o] for o in objectives] for r in rows])
    w = np.asarray(key[1])
    return Cell(key[0], key[1], tuple(mean_ci(scores[:, i]) for i in range(len(objectives))), mean_ci(scores @ w))


def _auto_reference(points: np.ndarray) -> list[float]:
    """Each objective's lowest mean minus 10% of its range (a small margin if all are equal)."""
    low, high = points.min(axis=0), points.max(axis=0)
    margin = np.where(high > low, 0.1 * (high - low), np.maximum(1e-3, 0.1 * np.abs(low)))
    return [float(x) for x in low - margin]


def _pivot(s: Summary) -> list[tuple[Weights, dict[str, float]]]:
    """Paper Table 4: the w-weighted score of each method's mean scores; single policies at every w."""
    out = []
    for w in s.weightings:
        row = {}
        for m in s.methods:
            cell = s.cells.get((m, w)) if not m.startswith(SINGLE_PREFIX) else _only_cell(s, m)
            if cell is not None:
                row[m] = float(np.dot(w, [c.mean for c in cell.means]))
        out.append((w, row))
    return out


def _only_cell(s: Summary, method: str) -> Cell | None:
    cells = [c for (m, _), c in s.cells.items() if m == method]
    return cells[0] if cells else None


def _win_tables(records, methods, weightings, objectives):
    """MOD vs RS at each w; vs each single policy (its fixed responses, judged at w) when RS is absent."""
    mods = [m for m in methods if m == "MOD" or m.startswith("MOD:")]
    rivals = ["RS"] if "RS" in methods else [m for m in methods if m.startswith(SINGLE_PREFIX)]
    singles = [r for r in records if r["method"].startswith(SINGLE_PREFIX)]
    expanded = [r for r in records if not r["method"].startswith(SINGLE_PREFIX)]
    expanded += [{**r, "weights": w} for r in singles for w in weightings]
    return [(a, b, win_rates(expanded, a, b, objectives)) for a in mods for b in rivals]


# --- plots ---------------------------------------------------------------------------------------


def _figure_module():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the report's plots need matplotlib: pip install 'moddecode[eval]'") from None
    return Figure


def _style(method: str, index: int) -> dict:
    """Weighted methods: coloured dots; single policies: dark markers of distinct shapes."""
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    if method.startswith(SINGLE_PREFIX):
        return {"color": "#333333", "marker": "*PXDvs^"[index % 7], "s": 150}
    return {"color": colors[index % len(colors)], "marker": "o", "s": 36}


def plot_pairs(s: Summary, out_dir: Path) -> list[Path]:
    """One PNG per pair of objectives: each method's mean points (95% CI bars), its front drawn as a line."""
    Figure = _figure_module()
    paths = []
    for i, j in itertools.combinations(range(len(s.objectives)), 2):
        fig = Figure(figsize=(6.4, 5.0), dpi=110)
        ax = fig.add_subplot()
        for k, m in enumerate(s.methods):
            ws, pts = s.points(m)
            style = _style(m, k)
            cells = [s.cells[(m, w)] for w in ws]
            xerr = _err(cells, i)
            yerr = _err(cells, j)
            ax.errorbar(pts[:, i], pts[:, j], xerr=xerr, yerr=yerr, fmt="none", ecolor=style["color"], alpha=0.25)
            single = m.startswith(SINGLE_PREFIX)  # hollow, so the MOD point at its one-hot weighting shows through
            ax.scatter(pts[:, i], pts[:, j], marker=style["marker"], s=style["s"], label=m, zorder=3 + single,
                       facecolors="none" if single else style["color"], edgecolors=style["color"],
                       linewidths=1.4 if single else 1.0)
            front = pareto_front(pts[:, [i, j]])
            if len(front) > 1:  # the method's frontier in this projection, left to right
                f = pts[front][np.argsort(pts[front][:, i])]
                ax.plot(f[:, i], f[:, j], color=style["color"], linewidth=1.6)
            if not m.startswith(SINGLE_PREFIX) and k == 0:
                for w, (x, y) in zip(ws, pts[:, [i, j]]):
                    ax.annotate(_wlabel(w), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                                color=style["color"])
        ax.set_xlabel(s.objectives[i])
        ax.set_ylabel(s.objectives[j])
        ax.set_title(f"Pareto frontiers: {s.objectives[i]} vs {s.objectives[j]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = out_dir / f"frontier_{_slug(s.objectives[i])}__{_slug(s.objectives[j])}.png"
        fig.savefig(path, bbox_inches="tight")
        paths.append(path)
    return paths


def plot_triples(s: Summary, out_dir: Path) -> list[Path]:
    """3-D views of the mean points for up to MAX_TRIPLES triples of objectives (3+ objectives only)."""
    Figure = _figure_module()
    paths = []
    for i, j, k in list(itertools.combinations(range(len(s.objectives)), 3))[:MAX_TRIPLES]:
        fig = Figure(figsize=(6.4, 5.4), dpi=110)
        ax = fig.add_subplot(projection="3d")
        for n, m in enumerate(s.methods):
            _, pts = s.points(m)
            style = _style(m, n)
            single = m.startswith(SINGLE_PREFIX)
            ax.scatter(pts[:, i], pts[:, j], pts[:, k], marker=style["marker"], s=style["s"], label=m,
                       facecolors="none" if single else style["color"], edgecolors=style["color"], depthshade=False)
        ax.set_xlabel(s.objectives[i])
        ax.set_ylabel(s.objectives[j])
        ax.set_zlabel(s.objectives[k])
        ax.set_title("mean scores, one point per method and weighting")
        ax.legend(fontsize=8)
        path = out_dir / f"frontier3d_{_slug(s.objectives[i])}__{_slug(s.objectives[j])}__{_slug(s.objectives[k])}.png"
        fig.savefig(path, bbox_inches="tight")
        paths.append(path)
    return paths


def _err(cells: list[Cell], i: int) -> np.ndarray:
    """[2, k] distances from the mean to the CI ends (clipped at 0 for errorbar)."""
    return np.array([[max(c.means[i].mean - c.means[i].low, 0) for c in cells],
                     [max(c.means[i].high - c.means[i].mean, 0) for c in cells]])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "objective"


def _wlabel(w: Weights) -> str:
    return "(" + ", ".join(f"{x:g}" for x in w) + ")"


# --- HTML ----------------------------------------------------------------------------------------


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


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:bold;background:#eef7ee}.note{color:#555;font-size:13px}img{max-width:100%;margin:.5em 0}
td.text{max-width:420px;white-space:pre-wrap;font-size:12px}"""


def render_html(s: Summary, pngs: list[Path]) -> str:
    e = html.escape
    info = s.info
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>MOD sweep: {e(info['name'])}</title>"
             f"<style>{_CSS}</style></head><body><h1>MOD sweep report: {e(info['name'])}</h1>", _overview(s)]
    parts.append("<h2>Pareto frontiers</h2>")
    for p in pngs:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(f"<div><img alt='{e(p.stem)}' src='data:image/png;base64,{data}'></div>")
    parts += [_front_table(s), _pivot_table(s), _means_table(s), _wins_tables(s), _examples(s), "</body></html>"]
    return "\n".join(parts)


def _overview(s: Summary) -> str:
    e = html.escape
    info = s.info
    items = [
        ("config hash", info["config_hash"]),
        ("objectives (weight order)", ", ".join(s.objectives)),
        ("policies", "; ".join(f"{p['name']}: {p.get('adapter') or p['source']}"
                               + (f" — system prompt “{p['system_prompt']}”" if p.get("system_prompt") else "")
                               for p in info["policies"])),
        ("divergences", ", ".join(info["divergences"])),
        ("methods", ", ".join(s.methods)),
        ("decoding", json.dumps(info["decoding"])),
        ("scorers", json.dumps(info["scorers"])),
        ("prompts", f"{len(info['prompts'])} from {info['prompts_source']}"),
        ("weightings", str(len(s.weightings))),
        ("rows", f"{s.rows_present} of {s.rows_planned} planned"
                 + ("" if s.rows_present >= s.rows_planned else " — the sweep is unfinished; rerun it to complete")),
    ]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in items)
    skipped = "".join(f"<p class='note'><b>{e(m)}</b>: {e(r)}</p>" for m, r in info.get("skipped", {}).items())
    return f"<table>{rows}</table>{skipped}"


def _front_table(s: Summary) -> str:
    e = html.escape
    how = ("chosen automatically: each objective's lowest mean minus 10% of its range; pin it with "
           "report.reference_point in the sweep config" if s.reference_auto else "from report.reference_point")
    ref = ", ".join(f"{x:.4g}" for x in s.reference_point)
    best = max(s.hypervolumes.values())
    body = "".join(
        f"<tr><td>{e(m)}</td><td class='num{' best' if s.hypervolumes[m] == best else ''}'>{s.hypervolumes[m]:.5g}"
        f"</td><td>{len(s.points(m)[0])}</td><td>{e(' '.join(_wlabel(w) for w in s.fronts[m]))}</td></tr>"
        for m in s.methods)
    return (f"<h2>Hypervolume and Pareto fronts</h2><p class='note'>Hypervolume of each method's mean points "
            f"(one per weighting) above the reference point ({e(ref)}) — {e(how)}.</p><table><tr><th>method</th>"
            f"<th>hypervolume</th><th>points</th><th>weightings on the Pareto front</th></tr>{body}</table>")


def _pivot_table(s: Summary) -> str:
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in s.methods)
    body = []
    for w, row in s.pivot:
        best = max(row.values()) if row else None
        cells = "".join(f"<td class='num{' best' if row.get(m) == best else ''}'>"
                        f"{'' if m not in row else f'{row[m]:.4f}'}</td>" for m in s.methods)
        body.append(f"<tr><td>{e(_wlabel(w))}</td>{cells}</tr>")
    formula = " + ".join(f"w{i + 1}·{o}" for i, o in enumerate(s.objectives))
    return (f"<h2>w-weighted score (paper Table 4)</h2><p class='note'>{e(formula)} of each method's mean scores at "
            f"weighting w; single policies answer the same way at every w. Best per row in bold.</p>"
            f"<table><tr><th>w</th>{head}</tr>{''.join(body)}</table>")


def _means_table(s: Summary) -> str:
    e = html.escape
    head = "".join(f"<th>{e(o)}</th>" for o in s.objectives)
    body = []
    for m in s.methods:
        for w in s.points(m)[0]:
            c = s.cells[(m, w)]
            cells = "".join(f"<td class='num'>{_ci(x)}</td>" for x in c.means)
            body.append(f"<tr><td>{e(m)}</td><td>{e(_wlabel(w))}</td><td class='num'>{c.weighted.n}</td>{cells}"
                        f"<td class='num'>{_ci(c.weighted)}</td></tr>")
    return ("<h2>Mean scores with 95% bootstrap confidence intervals</h2><table><tr><th>method</th><th>w</th>"
            f"<th>n</th>{head}<th>w-weighted</th></tr>{''.join(body)}</table>")


def _ci(x: MeanCI) -> str:
    return f"{x.mean:.4f} [{x.low:.4f}, {x.high:.4f}]"


def _wins_tables(s: Summary) -> str:
    e = html.escape
    if not s.wins:
        return "<h2>Win rates</h2><p class='note'>No MOD rows, or nothing to compare MOD with.</p>"
    out = ["<h2>Win rates</h2><p class='note'>Per weighting w: how often A's w-weighted score beats B's on the "
           "same prompt (ties count half).</p>"]
    for a, b, table in s.wins:
        rows = "".join(f"<tr><td>{e(_wlabel(w))}</td><td class='num'>{r.wins}</td><td class='num'>{r.losses}</td>"
                       f"<td class='num'>{r.ties}</td><td class='num'>{r.n}</td><td class='num'>{r.rate:.3f}</td></tr>"
                       for w, r in table.items())
        out.append(f"<h3>{e(a)} vs {e(b)}</h3><table><tr><th>w</th><th>wins</th><th>losses</th><th>ties</th>"
                   f"<th>n</th><th>win rate</th></tr>{rows}</table>")
    return "".join(out)


def _examples(s: Summary) -> str:
    """Paper H.6: a few prompts, each method's response at every weighting (single policies once)."""
    e = html.escape
    count = int(s.info.get("report", {}).get("examples", 2))
    prompts = s.info["prompts"][:count]
    if not prompts:
        return ""
    weighted = [m for m in s.methods if not m.startswith(SINGLE_PREFIX)]
    singles = [m for m in s.methods if m.startswith(SINGLE_PREFIX)]
    out = ["<h2>Example generations</h2>"]
    for p in prompts:
        pid = str(p["id"])
        out.append(f"<h3>{e(pid)}: {e(p['prompt'])}</h3><table><tr><th>w</th>"
                   + "".join(f"<th>{e(m)}</th>" for m in weighted) + "</tr>")
        for w in s.weightings:
            cells = "".join(f"<td class='text'>{e(s.responses.get((pid, m, weights_key(w)), '—'))}</td>"
                            for m in weighted)
            out.append(f"<tr><td>{e(_wlabel(w))}</td>{cells}</tr>")
        out.append("</table>")
        if singles:
            out.append("<table>" + "".join(
                f"<tr><th>{e(m)}</th><td class='text'>{e(_single_response(s, pid, m))}</td></tr>" for m in singles)
                + "</table>")
    return "".join(out)


def _single_response(s: Summary, pid: str, method: str) -> str:
    for (p, m, _), text in s.responses.items():
        if p == pid and m == method:
            return text
    return "—"
