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
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot!r}")
    mean = float(x.mean())
    if x.size == 1:
        return MeanCI(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boot = x[idx].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return MeanCI(mean, float(low), float(high), int(x.size))


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
