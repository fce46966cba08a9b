"""Markdown tables of a sweep summary, for docs/reproduction/README.md (scripts/reproduce.py writes the page)."""

from __future__ import annotations

from .summary import Summary


def _w(w) -> str:
    return "(" + ", ".join(f"{x:g}" for x in w) + ")"


def _ci(x, fmt: str = ".3f") -> str:
    return f"{x.mean:{fmt}} [{x.low:{fmt}}, {x.high:{fmt}}]"


def run_markdown(s: Summary, title: str, folder: str) -> str:
    """One run: what it is, hypervolume (with intervals, and the extra columns beside), paired MOD − RS per
    weighting, and the single policies' means."""
    info = s.info
    extra = "".join(f" | mean {c}" for c in s.columns)
    lines = [f"### {title}", "",
             f"`{folder}/` (config `{info['name']}`, hash `{info['config_hash']}`): {len(info['prompts'])} prompts from "
             f"`{info['prompts_source']}`, {len(s.weightings)} weightings, decoding `{info['decoding']}`, "
             f"divergences {', '.join(info['divergences'])}; {s.rows_present} of {s.rows_planned} rows"
             + (f", decoded on {' and '.join(info['ran_on'])}" if info.get("ran_on") else "") + ".", ""]
    if s.normalizer is not None:
        lines += ["Normalisation (single adapters' range): " + "; ".join(
            f"{o} [{lo:.3g}, {hi:.3g}]" for o, lo, hi in zip(s.objectives, s.normalizer.low, s.normalizer.high))
            + ".", ""]
    lines += [f"| method | hypervolume [95% CI] (reference {_w(s.reference_point)}) | Pareto-front points{extra} |",
              "|---|---|---|" + "---|" * len(s.columns)]
    for m in s.methods:
        cells = [c for (k, _), c in s.cells.items() if k == m]
        cols = "".join(f" | {sum(c.columns[i].mean for c in cells) / len(cells):.3f}" for i in range(len(s.columns)))
        lines.append(f"| {m} | {_ci(s.hypervolume_cis[m], '.4g')} | {len(s.fronts[m])}{cols} |")
    for a, b, table in s.paired:
        heads = "".join(f" | Δ {o}" for o in s.objectives) + " | Δ w-weighted (normalised)" + "".join(
            f" | Δ {c}" for c in s.columns)
        lines += ["", f"{a} − {b} per weighting (paired over prompts, 95% bootstrap):", "",
                  f"| w | n{heads} |", "|---|---|" + "---|" * (len(s.objectives) + 1 + len(s.columns))]
        for w, p in table.items():
            lines.append(f"| {_w(w)} | {p.weighted.n} | "
                         + " | ".join(_ci(x, "+.3f") for x in (*p.objectives, p.weighted, *p.columns)) + " |")
    singles = [m for m in s.methods if m.startswith("single:")]
    if singles:
        names = s.objectives + s.columns
        lines += ["", "| single policy | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for m in singles:
            c = s.single_cell(m)
            lines.append(f"| {m} | " + " | ".join(_ci(x) for x in (*c.means, *c.columns)) + " |")
    return "\n".join(lines) + "\n"


def h1_markdown(h1: dict) -> str:
    """The H.1 table from h1.json."""
    lines = [f"Decoded on {h1['ran_on']}.", ""] if h1.get("ran_on") else []
    lines += ["| weights (concise, positive) | MOD outputs unchanged | RS outputs unchanged | RS conciseness, original "
              "-> flipped | RS positivity | RS fluency (mean token log-prob) |", "|---|---|---|---|---|---|"]
    for r in h1["rows"]:
        o, f = r["rs"]["original"], r["rs"]["flipped"]
        lines.append(f"| {', '.join(f'{x:g}' for x in r['weights'])} | {r['mod_identical']}/{r['n']} | "
                     f"{r['rs_identical']}/{r['n']} | {o['concise']:.3f} -> {f['concise']:.3f} | "
                     f"{o['positive']:+.3f} -> {f['positive']:+.3f} | {r['rs_fluency']['original']:.3f} -> "
                     f"{r['rs_fluency']['flipped']:.3f} |")
    return "\n".join(lines) + "\n"
