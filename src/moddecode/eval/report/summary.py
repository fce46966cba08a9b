"""A finished (or partial) sweep's rows summarised: per-cell means with intervals, fronts, hypervolume
with a bootstrap interval, paired MOD - RS intervals per weighting, the w-weighted table (paper Table 4)
and win rates, both on objectives normalised by the single policies' range."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ..metrics import MeanCI, Normalizer, WinRate, hypervolume_ci, mean_ci, paired_difference_ci, win_rates
from ..pareto import pareto_front
from ..store import ResultStore, read_export, weights_key
from ..sweep.layout import EXPORT_FILE, RUN_FILE, SINGLE_PREFIX, STORE_FILE

Weights = tuple[float, ...]


@dataclass(frozen=True)
class Cell:
    """Scores of one method at one weighting over the prompts: per-objective and w-weighted mean with CIs.

    `weighted` uses the normalised objectives when the summary has a normaliser; `columns` are the extra
    score columns (e.g. fluency), never weighted; `per_prompt` maps prompt id -> objectives + columns."""

    method: str
    weights: Weights
    means: tuple[MeanCI, ...]
    weighted: MeanCI
    columns: tuple[MeanCI, ...] = ()
    per_prompt: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Paired:
    """A - B at one weighting over the prompts both answered: per objective (raw units), the w-weighted
    score of the normalised objectives, and each extra column; each a mean with a paired bootstrap CI."""

    weights: Weights
    objectives: tuple[MeanCI, ...]
    weighted: MeanCI
    columns: tuple[MeanCI, ...]


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
    pivot: list[tuple[Weights, dict[str, float]]]  # weighting -> method -> w-weighted score (normalised)
    wins: list[tuple[str, str, dict[Weights, WinRate]]]
    rows_present: int
    rows_planned: int
    responses: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (prompt, method, wkey) -> text
    columns: list[str] = field(default_factory=list)  # extra score columns (e.g. fluency), never weighted
    normalizer: Normalizer | None = None  # None: some single policy has no rows, objectives stay raw
    hypervolume_cis: dict[str, MeanCI] = field(default_factory=dict)  # over the prompts every point answered
    paired: list[tuple[str, str, dict[Weights, Paired]]] = field(default_factory=list)  # MOD vs RS

    def points(self, method: str) -> tuple[list[Weights], np.ndarray]:
        """A method's weightings and mean score vectors [k, d], in plan order."""
        ws = [w for w in self._weightings_of(method) if (method, w) in self.cells]
        return ws, np.array([[m.mean for m in self.cells[(method, w)].means] for w in ws]).reshape(len(ws), -1)

    def _weightings_of(self, method: str) -> list[Weights]:
        if method.startswith(SINGLE_PREFIX):
            return sorted({w for (m, w) in self.cells if m == method})
        return self.weightings

    def single_cell(self, method: str) -> Cell | None:
        """The one cell of a single policy (it answers the same way at every w)."""
        return next((c for (m, _), c in self.cells.items() if m == method), None)


def _stored_rows(run_dir: Path, info: dict) -> list:
    store_path = run_dir / info.get("store", STORE_FILE)
    if store_path.is_file():
        with ResultStore(store_path) as store:
            return store.rows(info["config_hash"])
    export = run_dir / EXPORT_FILE
    if export.is_file():
        chash, _, rows = read_export(export)
        if chash != info["config_hash"]:
            raise ConfigError(f"{export} holds rows of config {chash}, but run.json names {info['config_hash']}")
        return rows
    raise ConfigError(f"{store_path} is missing (and there is no {EXPORT_FILE}); rerun `moddecode sweep` for this "
                      "config")


def load_rows(run_dir: Path) -> tuple[dict, list]:
    """run.json and this run's rows (config hash and plan), from results.sqlite or, when a run was shipped
    without it, results.jsonl.gz; a clear error if RUN is not a run folder."""
    run_dir = Path(run_dir)
    info_path = run_dir / RUN_FILE
    if not info_path.is_file():
        raise ConfigError(f"{run_dir} is not a sweep run folder (no {RUN_FILE}); pass the folder `moddecode sweep` "
                          "wrote, e.g. runs/<name>")
    info = json.loads(info_path.read_text())
    rows = _stored_rows(run_dir, info)
    plan_ids = {str(p["id"]) for p in info["prompts"]}
    keys = {weights_key(w) for w in info["weightings"]}
    methods = set(info["methods"])
    rows = [r for r in rows if r.method in methods and r.prompt_id in plan_ids
            and (r.method.startswith(SINGLE_PREFIX) or weights_key(r.weights) in keys)]
    if not rows:
        raise ConfigError(f"no results in {run_dir} for config {info['config_hash']} yet; run `moddecode sweep` first")
    return info, rows


def summarize(run_dir: str | Path, n_boot: int = 1000) -> Summary:
    """Compute every table of the report from RUN's rows."""
    info, rows = load_rows(Path(run_dir))
    objectives = list(info["objectives"])
    columns = [c for c in info.get("columns", []) if all(c in r.scores for r in rows)]
    weightings = [tuple(float(x) for x in w) for w in info["weightings"]]
    methods = [m for m in info["methods"] if any(r.method == m for r in rows)]
    groups: dict[tuple[str, Weights], list] = defaultdict(list)
    for r in rows:
        groups[(r.method, tuple(r.weights))].append(r)
    names = objectives + columns
    per_prompt = {key: {r.prompt_id: np.array([r.scores[o] for o in names], dtype=np.float64) for r in rs}
                  for key, rs in groups.items()}
    normalizer = _normalizer(info, per_prompt, objectives)
    cells = {key: _cell(key, per_prompt[key], len(objectives), normalizer) for key in groups}
    summary = Summary(info, objectives, methods, weightings, cells, {}, {}, [], False, [], [],
                      rows_present=len(rows), rows_planned=_planned(info),
                      responses={(r.prompt_id, r.method, weights_key(r.weights)): r.response for r in rows},
                      columns=columns, normalizer=normalizer)
    all_points = np.vstack([summary.points(m)[1] for m in methods])
    ref = info.get("report", {}).get("reference_point")
    summary.reference_auto = ref is None
    summary.reference_point = [float(x) for x in ref] if ref is not None else _auto_reference(all_points)
    for m in methods:
        ws, pts = summary.points(m)
        summary.fronts[m] = [ws[i] for i in pareto_front(pts)]
        summary.hypervolume_cis[m] = _hypervolume_ci(summary, m, n_boot)
        summary.hypervolumes[m] = summary.hypervolume_cis[m].mean
    summary.pivot = _pivot(summary)
    records = [r.as_record() for r in rows]
    if normalizer is not None:
        records = [normalizer.record(r) for r in records]
    summary.wins = _win_tables(records, methods, weightings, objectives)
    summary.paired = _paired_tables(summary, n_boot)
    return summary


def _planned(info: dict) -> int:
    singles = sum(m.startswith(SINGLE_PREFIX) for m in info["methods"])
    return len(info["prompts"]) * ((len(info["methods"]) - singles) * len(info["weightings"]) + singles)


def _normalizer(info: dict, per_prompt: dict, objectives: list[str]) -> Normalizer | None:
    """The single policies' range per objective, when every policy has single rows (else None)."""
    singles = [m for m in info["methods"] if m.startswith(SINGLE_PREFIX)]
    means = []
    for m in singles:
        vecs = [v for (method, _), by_prompt in per_prompt.items() if method == m for v in by_prompt.values()]
        if not vecs:
            return None
        means.append(np.mean(vecs, axis=0)[: len(objectives)])
    return Normalizer.from_singles(objectives, means) if len(means) == len(objectives) else None


def _cell(key: tuple[str, Weights], by_prompt: dict, d: int, normalizer: Normalizer | None) -> Cell:
    scores = np.array(list(by_prompt.values()))
    objectives = normalizer(scores[:, :d]) if normalizer is not None else scores[:, :d]
    return Cell(key[0], key[1], tuple(mean_ci(scores[:, i]) for i in range(d)), mean_ci(objectives @ np.asarray(key[1])),
                tuple(mean_ci(scores[:, i]) for i in range(d, scores.shape[1])), by_prompt)


def _hypervolume_ci(s: Summary, method: str, n_boot: int) -> MeanCI:
    """Bootstrap over the prompts that every point of `method` answered (raw objectives, s.reference_point)."""
    ws = s.points(method)[0]
    cells = [s.cells[(method, w)] for w in ws]
    common = sorted(set.intersection(*(set(c.per_prompt) for c in cells)))
    d = len(s.objectives)
    scores = np.array([[c.per_prompt[p][:d] for p in common] for c in cells]).reshape(len(cells), len(common), d)
    return hypervolume_ci(scores, s.reference_point, n_boot=n_boot)


def _paired_tables(s: Summary, n_boot: int) -> list[tuple[str, str, dict[Weights, Paired]]]:
    """Per weighting, A - B over the prompts both answered, for each MOD method A against RS."""
    if "RS" not in s.methods:
        return []
    d = len(s.objectives)
    out = []
    for a in (m for m in s.methods if m == "MOD" or m.startswith("MOD:")):
        table = {}
        for w in s.weightings:
            ca, cb = s.cells.get((a, w)), s.cells.get(("RS", w))
            common = sorted(set(ca.per_prompt) & set(cb.per_prompt)) if ca and cb else []
            if not common:
                continue
            va, vb = (np.array([c.per_prompt[p] for p in common]) for c in (ca, cb))
            na, nb = (s.normalizer(v[:, :d]) if s.normalizer else v[:, :d] for v in (va, vb))
            diff = [paired_difference_ci(va[:, i], vb[:, i], n_boot=n_boot) for i in range(va.shape[1])]
            table[w] = Paired(w, tuple(diff[:d]), paired_difference_ci(na @ np.asarray(w), nb @ np.asarray(w),
                                                                        n_boot=n_boot), tuple(diff[d:]))
        out.append((a, "RS", table))
    return out


def _auto_reference(points: np.ndarray) -> list[float]:
    """Each objective's lowest mean minus 10% of its range (a small margin if all are equal)."""
    low, high = points.min(axis=0), points.max(axis=0)
    margin = np.where(high > low, 0.1 * (high - low), np.maximum(1e-3, 0.1 * np.abs(low)))
    return [float(x) for x in low - margin]


def _pivot(s: Summary) -> list[tuple[Weights, dict[str, float]]]:
    """Paper Table 4: the w-weighted score of each method's mean (normalised) scores; singles at every w."""
    out = []
    for w in s.weightings:
        row = {}
        for m in s.methods:
            cell = s.cells.get((m, w)) if not m.startswith(SINGLE_PREFIX) else s.single_cell(m)
            if cell is not None:
                means = np.array([c.mean for c in cell.means])
                row[m] = float(np.dot(w, s.normalizer(means) if s.normalizer is not None else means))
        out.append((w, row))
    return out


def _win_tables(records, methods, weightings, objectives):
    """MOD vs RS at each w; vs each single policy (its fixed responses, judged at w) when RS is absent."""
    mods = [m for m in methods if m == "MOD" or m.startswith("MOD:")]
    rivals = ["RS"] if "RS" in methods else [m for m in methods if m.startswith(SINGLE_PREFIX)]
    singles = [r for r in records if r["method"].startswith(SINGLE_PREFIX)]
    expanded = [r for r in records if not r["method"].startswith(SINGLE_PREFIX)]
    expanded += [{**r, "weights": w} for r in singles for w in weightings]
    return [(a, b, win_rates(expanded, a, b, objectives)) for a in mods for b in rivals]


# --- plots ---------------------------------------------------------------------------------------
