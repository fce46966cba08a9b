"""Summarise finished reproduction runs (runs/repro-*) as markdown: hypervolume per method, MOD vs RS
win rates, and the mean scores at each weighting. Used to write docs/reproduction/README.md.

    .venv/bin/python scripts/repro_summary.py runs/repro-three-objectives runs/repro-negative-weights ...
"""

from __future__ import annotations

import sys

from moddecode.eval.report import summarize


def run_markdown(run_dir: str) -> str:
    s = summarize(run_dir)
    lines = [f"### {s.info.get('name', run_dir)}", "",
             f"{s.rows_present} of {s.rows_planned} rows; objectives: {', '.join(s.objectives)}; "
             f"hypervolume reference point {s.reference_point}.", "",
             "| method | hypervolume | Pareto-front weightings |", "|---|---|---|"]
    for m in s.methods:
        lines.append(f"| {m} | {s.hypervolumes[m]:.4f} | {len(s.fronts[m])} |")
    for a, b, table in s.wins:
        if a.startswith("MOD") and b == "RS":
            rates = [wr.rate for wr in table.values()]
            beat = sum(r > 0.5 for r in rates)
            lines += ["", f"{a} vs {b}: mean win rate {sum(rates) / len(rates):.2f} over {len(rates)} weightings "
                          f"(MOD ahead at {beat}, RS ahead at {sum(r < 0.5 for r in rates)}; "
                          "w-weighted score per prompt, ties count half)."]
    lines += ["", "| weights | " + " | ".join(f"{m}: " + ", ".join(s.objectives) for m in s.methods if not m.startswith("single"))
              + " |", "|---|" + "---|" * sum(not m.startswith("single") for m in s.methods)]
    for w in s.weightings:
        cells = []
        for m in s.methods:
            if m.startswith("single"):
                continue
            cell = s.cells.get((m, w))
            cells.append("-" if cell is None else ", ".join(f"{c.mean:.3f}" for c in cell.means))
        lines.append(f"| {', '.join(f'{x:g}' for x in w)} | " + " | ".join(cells) + " |")
    singles = [m for m in s.methods if m.startswith("single")]
    if singles:
        lines += ["", "Single policies: " + "; ".join(
            f"{m}: " + ", ".join(f"{c.mean:.3f}" for c in next(v for k, v in s.cells.items() if k[0] == m).means)
            for m in singles) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print("\n".join(run_markdown(r) for r in sys.argv[1:]))
