"""A finished (or partial) sweep's rows summarised: per-cell means with intervals, fronts, hypervolume,
the w-weighted table (paper Table 4) and win rates."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ..metrics import MeanCI, WinRate, mean_ci, win_rates
from ..pareto import hypervolume, pareto_front
from ..store import ResultStore, weights_key
from ..sweep.layout import RUN_FILE, SINGLE_PREFIX, STORE_FILE

Weights = tuple[float, ...]


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
