"""Evaluation toolkit: scorers, weight grids, Pareto fronts / hypervolume, summary metrics, a resumable
results store, and exact tabular checks of the paper's theory."""

from .grids import explicit, negative_line, parse_grid, simplex_lattice, two_objective_grid
from .metrics import MeanCI, TableRow, WinRate, mean_ci, weighted_score, weighted_score_table, win_rates
from .pareto import hypervolume, pareto_front
from .scorers import (
    CallableScorer,
    ConcisenessScorer,
    FluencyScorer,
    HFRewardScorer,
    LengthScorer,
    LLMJudgeScorer,
    ReadabilityScorer,
    Scorer,
    VaderScorer,
    available_scorers,
    get_scorer,
    register_scorer,
)
from .store import ResultRow, ResultStore, config_hash, parse_weights_key, result_key, weights_key

__all__ = [
    "explicit",
    "negative_line",
    "parse_grid",
    "simplex_lattice",
    "two_objective_grid",
    "MeanCI",
    "TableRow",
    "WinRate",
    "mean_ci",
    "weighted_score",
    "weighted_score_table",
    "win_rates",
    "hypervolume",
    "pareto_front",
    "CallableScorer",
    "ConcisenessScorer",
    "FluencyScorer",
    "HFRewardScorer",
    "LengthScorer",
    "LLMJudgeScorer",
    "ReadabilityScorer",
    "Scorer",
    "VaderScorer",
    "available_scorers",
    "get_scorer",
    "register_scorer",
    "ResultRow",
    "ResultStore",
    "config_hash",
    "parse_weights_key",
    "result_key",
    "weights_key",
]
