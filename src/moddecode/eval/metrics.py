"""Summary statistics over evaluation records.

A record is a dict with keys
    prompt_id: hashable id of the prompt,
    method:    name of the decoding method ("MOD", "RS", ...),
    weights:   the preference weighting the response was decoded with (tuple, one weight per objective),
    scores:    dict objective -> float.
`objectives` lists the objective names in weight order, so weights[i] pairs with objectives[i].
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

Weights = tuple[float, ...]


@dataclass(frozen=True)
class MeanCI:
    """Sample mean and a percentile-bootstrap confidence interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class TableRow:
    """One (weighting, method) row of the w-weighted score table (the paper's Table 4).

    means: objective -> mean score over the prompts; weighted: sum_i weights[i] * means[objectives[i]].
    """

    weights: Weights
    method: str
    means: dict[str, float]
    weighted: float
    n: int


@dataclass(frozen=True)
class WinRate:
    """Head-to-head of method A vs B at one weighting over the prompts both answered.

    rate = (wins + ties / 2) / n, the fraction of prompts where A's w-weighted score beats B's.
    """

    weights: Weights
    wins: int
    losses: int
    ties: int
    n: int
    rate: float


def mean_ci(values: Sequence[float], confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> MeanCI:
    """Mean of `values` with a percentile-bootstrap CI (resampling with replacement, seeded).

    With one value the interval collapses to that value.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ConfigError(f"mean_ci needs a non-empty 1-D list of numbers, got shape {x.shape}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    idx = _boot_indices(x.size, n_boot, seed)
    mean = float(x.mean())
    if x.size == 1:
        return MeanCI(mean, mean, mean, 1)
    return _percentile_interval(mean, x[idx].mean(axis=1), confidence, int(x.size))


def _weights_of(record: Mapping, n_obj: int) -> Weights:
    w = record.get("weights")
    try:
        wt = tuple(float(v) + 0.0 for v in w)
    except (TypeError, ValueError):
        raise ConfigError(f"record {_describe(record)} has weights {w!r}; expected a list of numbers") from None
    if len(wt) != n_obj:
        raise ConfigError(
            f"record {_describe(record)} has {len(wt)} weights but {n_obj} objectives were given; "
            "pass `objectives` in the same order as the weights"
        )
    return wt


def _describe(record: Mapping) -> str:
    return f"(prompt_id={record.get('prompt_id')!r}, method={record.get('method')!r})"


def _score_vector(record: Mapping, objectives: Sequence[str]) -> np.ndarray:
    scores = record.get("scores")
    if not isinstance(scores, Mapping):
        raise ConfigError(f"record {_describe(record)} has no 'scores' dict")
    missing = [o for o in objectives if o not in scores]
    if missing:
        raise ConfigError(f"record {_describe(record)} lacks scores for {missing}; it has {sorted(scores)}")
    return np.array([float(scores[o]) for o in objectives], dtype=np.float64)


def _check_objectives(objectives: Sequence[str]) -> list[str]:
    objs = list(objectives)
    if not objs or len(set(objs)) != len(objs):
        raise ConfigError(f"objectives must be a non-empty list of distinct names, got {objs!r}")
    return objs


def weighted_score(scores: Mapping[str, float], weights: Sequence[float], objectives: Sequence[str]) -> float:
    """sum_i weights[i] * scores[objectives[i]]."""
    objs = _check_objectives(objectives)
    vec = _score_vector({"scores": scores}, objs)
    if len(weights) != len(objs):
        raise ConfigError(f"{len(weights)} weights for {len(objs)} objectives")
    return float(np.dot(np.asarray(weights, dtype=np.float64), vec))


def weighted_score_table(records: Iterable[Mapping], objectives: Sequence[str]) -> list[TableRow]:
    """Per (weighting, method): mean score of each objective and the w-weighted score of those means.

    Rows are sorted by weighting, then method. This is the layout of the paper's Table 4.
    """
    objs = _check_objectives(objectives)
    groups: dict[tuple[Weights, str], list[np.ndarray]] = defaultdict(list)
    for r in records:
        groups[(_weights_of(r, len(objs)), str(r.get("method")))].append(_score_vector(r, objs))
    rows = []
    for (w, method), vecs in sorted(groups.items()):
        means = np.mean(vecs, axis=0)
        rows.append(TableRow(w, method, {o: float(m) for o, m in zip(objs, means)}, float(np.dot(w, means)), len(vecs)))
    return rows


def win_rates(
    records: Iterable[Mapping], method_a: str, method_b: str, objectives: Sequence[str]
) -> dict[Weights, WinRate]:
    """Per weighting w: how often A's w-weighted score beats B's on the same prompt (ties count half).

    Only prompts answered by both methods at w are compared. A (prompt, method, weighting) that
    appears twice is ambiguous and raises.
    """
    objs = _check_objectives(objectives)
    if method_a == method_b:
        raise ConfigError(f"compare two different methods; both are {method_a!r}")
    by_key: dict[tuple[Weights, object, str], float] = {}
    for r in records:
        method = r.get("method")
        if method not in (method_a, method_b):
            continue
        w = _weights_of(r, len(objs))
        key = (w, r.get("prompt_id"), method)
        if key in by_key:
            raise ConfigError(f"duplicate record {_describe(r)} at weights {w}; keep one response per prompt")
        by_key[key] = float(np.dot(w, _score_vector(r, objs)))
    counts: dict[Weights, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (w, pid, method), sa in by_key.items():
        if method != method_a or (w, pid, method_b) not in by_key:
            continue
        sb = by_key[(w, pid, method_b)]
        counts[w][0 if sa > sb else 1 if sa < sb else 2] += 1
    out = {}
    for w in sorted(counts):
        wins, losses, ties = counts[w]
        n = wins + losses + ties
        out[w] = WinRate(w, wins, losses, ties, n, (wins + 0.5 * ties) / n)
    return out


# --- paired statistics over prompts ---------------------------------------------------------------


def _percentile_interval(point: float, boot: np.ndarray, confidence: float, n: int) -> MeanCI:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return MeanCI(point, float(low), float(high), n)


def _boot_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot!r}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def paired_difference_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, n_boot: int = 2000,
                         seed: int = 0) -> MeanCI:
    """Mean of a - b over paired items (a[k] and b[k] answer the same prompt) with a percentile-bootstrap
    interval that resamples the prompts, so both members of a pair are always drawn together."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ConfigError(f"paired_difference_ci needs two equally long non-empty lists, got {x.shape} and {y.shape}")
    return mean_ci(x - y, confidence=confidence, n_boot=n_boot, seed=seed)


def hypervolume_ci(scores: np.ndarray, reference: Sequence[float], confidence: float = 0.95, n_boot: int = 1000,
                   seed: int = 0) -> MeanCI:
    """Hypervolume of the mean score vectors with a bootstrap interval over prompts.

    scores: [k points (weightings), n prompts, d objectives], every point scored on the same n prompts.
    Each bootstrap draw resamples the n prompts once (the same draw for every point), recomputes the k
    mean vectors and their hypervolume above `reference`. `mean` is the hypervolume of the full sample.
    """
    from .pareto import hypervolume

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 3 or 0 in s.shape:
        raise ConfigError(f"hypervolume_ci needs scores [points, prompts, objectives], got shape {s.shape}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    point = hypervolume(s.mean(axis=1), reference)
    n = s.shape[1]
    if n == 1:
        return MeanCI(point, point, point, 1)
    boot = np.array([hypervolume(s[:, idx].mean(axis=1), reference) for idx in _boot_indices(n, n_boot, seed)])
    return _percentile_interval(point, boot, confidence, n)


@dataclass(frozen=True)
class Normalizer:
    """Maps each objective to the single policies' range: (x - low) / (high - low).

    low/high: per objective, the min/max over the one-hot (single-adapter) policies' mean scores. An
    objective on which every single policy has the same mean (no range) is left unscaled (span 1).
    """

    objectives: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def from_singles(cls, objectives: Sequence[str], single_means: Sequence[Sequence[float]]) -> "Normalizer":
        m = np.asarray(single_means, dtype=np.float64)
        objs = _check_objectives(objectives)
        if m.ndim != 2 or m.shape[1] != len(objs) or m.shape[0] == 0:
            raise ConfigError(f"single_means must be [policies, {len(objs)} objectives], got shape {m.shape}")
        return cls(tuple(objs), tuple(float(v) for v in m.min(axis=0)), tuple(float(v) for v in m.max(axis=0)))

    @property
    def span(self) -> np.ndarray:
        span = np.asarray(self.high) - np.asarray(self.low)
        return np.where(span > 0, span, 1.0)

    def __call__(self, values):
        """values [..., d] in objective order -> the same shape, normalised."""
        return (np.asarray(values, dtype=np.float64) - np.asarray(self.low)) / self.span

    def record(self, record: Mapping) -> dict:
        """A metrics record with its objectives' scores normalised (other score columns unchanged)."""
        vec = self(_score_vector(record, self.objectives))
        return {**record, "scores": {**record["scores"], **dict(zip(self.objectives, vec.tolist()))}}
