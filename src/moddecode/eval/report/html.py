"""The self-contained HTML page of a sweep report (plots embedded as data URIs)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..metrics import MeanCI
from ..store import weights_key
from ..sweep.layout import SINGLE_PREFIX
from .plots import _wlabel
from .summary import Summary

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
    parts += [_front_table(s), _normalisation_note(s), _paired_tables(s), _pivot_table(s), _means_table(s),
              _wins_tables(s), _examples(s), "</body></html>"]
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
        f"<tr><td>{e(m)}</td><td class='num{' best' if s.hypervolumes[m] == best else ''}'>"
        f"{_ci(s.hypervolume_cis[m], '.5g')}</td>{_column_means(s, m)}<td>{len(s.points(m)[0])}</td>"
        f"<td>{e(' '.join(_wlabel(w) for w in s.fronts[m]))}</td></tr>" for m in s.methods)
    return (f"<h2>Hypervolume and Pareto fronts</h2><p class='note'>Hypervolume of each method's mean points "
            f"(one per weighting) above the reference point ({e(ref)}) — {e(how)}. The interval resamples the "
            f"prompts (the same draw for every weighting), recomputes the mean points and their hypervolume "
            f"(95% percentile bootstrap).</p><table><tr><th>method</th><th>hypervolume [95% CI]</th>"
            f"{_column_heads(s, 'mean ')}<th>points</th><th>weightings on the Pareto front</th></tr>{body}</table>")


def _column_heads(s: Summary, prefix: str = "") -> str:
    return "".join(f"<th>{html.escape(prefix + c)}</th>" for c in s.columns)


def _column_means(s: Summary, method: str) -> str:
    """Each extra column (e.g. fluency) averaged over a method's cells."""
    cells = [c for (m, _), c in s.cells.items() if m == method]
    return "".join(f"<td class='num'>{sum(c.columns[i].mean for c in cells) / len(cells):.4f}</td>"
                   for i in range(len(s.columns)))


def _normalisation_note(s: Summary) -> str:
    if s.normalizer is None:
        return ("<p class='note'>Objectives are <b>not normalised</b> (some single policy has no rows): "
                "w-weighted scores and win rates use raw scores.</p>")
    spans = "; ".join(f"{o}: [{lo:.4g}, {hi:.4g}]" for o, lo, hi in zip(s.objectives, s.normalizer.low,
                                                                       s.normalizer.high))
    return ("<p class='note'>Before any w-weighted score or win rate, each objective is normalised by the single "
            f"policies' range, (x - min) / (max - min) over their mean scores: {html.escape(spans)}.</p>")


def _paired_tables(s: Summary) -> str:
    e = html.escape
    if not s.paired:
        return ""
    out = ["<h2>Paired differences (MOD − RS)</h2><p class='note'>Per weighting, the mean over prompts of "
           "MOD's score minus RS's on the same prompt, with a 95% paired bootstrap interval (prompts resampled, "
           "seed 0). An interval that excludes 0 is a difference; one that contains 0 is a tie at this sample size. "
           "The w-weighted column uses the normalised objectives.</p>"]
    heads = "".join(f"<th>Δ {e(o)}</th>" for o in s.objectives) + "<th>Δ w-weighted</th>" + _column_heads(s, "Δ ")
    for a, b, table in s.paired:
        rows = "".join(f"<tr><td>{e(_wlabel(w))}</td><td class='num'>{p.weighted.n}</td>"
                       + "".join(f"<td class='num'>{_ci(x)}</td>" for x in (*p.objectives, p.weighted, *p.columns))
                       + "</tr>" for w, p in table.items())
        out.append(f"<h3>{e(a)} − {e(b)}</h3><table><tr><th>w</th><th>n</th>{heads}</tr>{rows}</table>")
    return "".join(out)


def _pivot_table(s: Summary) -> str:
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in s.methods)
    body = []
    for w, row in s.pivot:
        best = max(row.values()) if row else None
        cells = "".join(f"<td class='num{' best' if row.get(m) == best else ''}'>"
                        f"{'' if m not in row else f'{row[m]:.4f}'}{_beside(s, m, w)}</td>" for m in s.methods)
        body.append(f"<tr><td>{e(_wlabel(w))}</td>{cells}</tr>")
    formula = " + ".join(f"w{i + 1}·{o}" for i, o in enumerate(s.objectives))
    beside = f" Beside each score: {', '.join(s.columns)} (mean)." if s.columns else ""
    return (f"<h2>w-weighted score (paper Table 4)</h2><p class='note'>{e(formula)} of each method's mean "
            f"{'normalised ' if s.normalizer else ''}scores at weighting w; single policies answer the same way at "
            f"every w. Best per row in bold.{e(beside)}</p><table><tr><th>w</th>{head}</tr>{''.join(body)}</table>")


def _beside(s: Summary, method: str, w) -> str:
    """The extra columns' means of one cell, in small print ('' without extra columns)."""
    cell = s.single_cell(method) if method.startswith(SINGLE_PREFIX) else s.cells.get((method, w))
    if cell is None or not s.columns:
        return ""
    return "<br><small>" + ", ".join(f"{c.mean:.3f}" for c in cell.columns) + "</small>"


def _means_table(s: Summary) -> str:
    e = html.escape
    head = "".join(f"<th>{e(o)}</th>" for o in s.objectives + s.columns)
    body = []
    for m in s.methods:
        for w in s.points(m)[0]:
            c = s.cells[(m, w)]
            cells = "".join(f"<td class='num'>{_ci(x)}</td>" for x in (*c.means, *c.columns))
            body.append(f"<tr><td>{e(m)}</td><td>{e(_wlabel(w))}</td><td class='num'>{c.weighted.n}</td>{cells}"
                        f"<td class='num'>{_ci(c.weighted)}</td></tr>")
    return ("<h2>Mean scores with 95% bootstrap confidence intervals</h2><table><tr><th>method</th><th>w</th>"
            f"<th>n</th>{head}<th>w-weighted</th></tr>{''.join(body)}</table>")


def _ci(x: MeanCI, fmt: str = ".4f") -> str:
    return f"{x.mean:{fmt}} [{x.low:{fmt}}, {x.high:{fmt}}]"


def _wins_tables(s: Summary) -> str:
    e = html.escape
    if not s.wins:
        return "<h2>Win rates</h2><p class='note'>No MOD rows, or nothing to compare MOD with.</p>"
    out = ["<h2>Win rates</h2><p class='note'>Per weighting w: how often A's w-weighted score "
           f"({'normalised objectives' if s.normalizer else 'raw objectives'}) beats B's on the same prompt (ties "
           "count half).</p>"]
    for a, b, table in s.wins:
        rows = "".join(f"<tr><td>{e(_wlabel(w))}</td><td class='num'>{r.wins}</td><td class='num'>{r.losses}</td>"
                       f"<td class='num'>{r.ties}</td><td class='num'>{r.n}</td><td class='num'>{r.rate:.3f}</td>"
                       + "".join(f"<td class='num'>{_beside(s, m, w).removeprefix('<br><small>').removesuffix('</small>')}"
                                 "</td>" for m in ((a, b) if s.columns else ()))
                       + "</tr>" for w, r in table.items())
        beside = "".join(f"<th>{e(m)}: {e(', '.join(s.columns))}</th>" for m in (a, b)) if s.columns else ""
        out.append(f"<h3>{e(a)} vs {e(b)}</h3><table><tr><th>w</th><th>wins</th><th>losses</th><th>ties</th>"
                   f"<th>n</th><th>win rate</th>{beside}</tr>{rows}</table>")
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
