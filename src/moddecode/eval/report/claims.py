"""The paper's claims judged on this repository's runs, each by an explicit rule (`RULES`, printed in the page).

Verdicts: "reproduced", "not reproduced", "not applicable at this scale" (the run cannot test the claim, e.g.
the single adapters do not separate on their own objectives), "not run" (no results yet). Every rule that
reads a sweep uses paired bootstrap intervals over prompts (95%, seed 0): an interval above 0 is a win,
below 0 a loss, one containing 0 a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics import MeanCI, paired_difference_ci
from ..sweep.layout import SINGLE_PREFIX
from .summary import Summary

REPRODUCED, NOT_REPRODUCED, NOT_APPLICABLE, NOT_RUN = (
    "reproduced", "not reproduced", "not applicable at this scale", "not run")
THEORY_DIVERGENCES = ("reverse_kl", "forward_kl", "jsd", "alpha:0.5", "alpha:0.3")

RULES = {
    "Eq. 5 optimality": "On random tabular instances (6 responses, 3 objectives, 20 seeds) the MOD combination of "
    "the f-optimal single policies (`theory.f_mod_policy`) is the f-optimal policy for sum_i w_i R_i "
    "(`theory.f_optimal_policy`) for every divergence listed: reproduced when the largest total variation "
    "distance is below 1e-9.",
    "Theorem 2(ii)": "In the paper's ReLU construction (`theory.theorem2_reverse_kl_example`), reproduced when the "
    "best parameter merge stays at least 1e-3 (total variation) from the optimum while MOD is within 1e-9.",
    "MOD vs RS frontier": "Each interior weighting (two or more positive weights) is a MOD win, tie or loss by "
    "the paired interval of MOD − RS on the w-weighted score of normalised objectives. Reproduced: at least one "
    "win and no loss. Not reproduced: otherwise. Not applicable: some single adapter does not beat every other "
    "single adapter on its own objective (paired interval above 0), so there is no trade-off to cover.",
    "Negative weights": "For each weighting (1 + t, −t) with t > 0 the paired interval of MOD − the single "
    "policy of the positively weighted objective, on that objective. Reproduced: above 0 at the largest t in at "
    "least one direction, and below 0 at no largest t. Not reproduced: otherwise.",
    "H.1": "Reproduced when MOD's outputs are identical with the original and the sign-flipped model at every "
    "weighting, and Rewarded Soups' outputs change at some interior weighting with lower fluency (mean token "
    "log-prob under the plain model) at most interior weightings.",
}


@dataclass(frozen=True)
class Claim:
    name: str  # the rule's key in RULES
    paper: str  # what the paper claims, and where
    ours: str  # which run / check
    verdict: str
    numbers: str


def _ci(x: MeanCI, fmt: str = "+.3f") -> str:
    return f"{x.mean:{fmt}} [{x.low:{fmt}}, {x.high:{fmt}}]"


def _sign(x: MeanCI) -> int:
    return 1 if x.low > 0 else -1 if x.high < 0 else 0


def theory_claims(seeds: int = 20) -> list[Claim]:
    """Eq. 5 optimality for each divergence, and Theorem 2(ii), on exact tabular instances."""
    from .. import theory

    worst = {}
    for div in THEORY_DIVERGENCES:
        gaps = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            ref, rewards = rng.dirichlet(np.ones(6)), rng.normal(size=(3, 6))
            w, beta = rng.dirichlet(np.ones(3)), float(rng.uniform(0.2, 2.0))
            pis = np.stack([theory.f_optimal_policy(ref, r, beta, div) for r in rewards])
            gaps.append(theory.total_variation(theory.f_mod_policy(ref, pis, w, div),
                                               theory.f_optimal_policy(ref, w @ rewards, beta, div)))
        worst[div] = max(gaps)
    eq5 = Claim("Eq. 5 optimality", "MOD of the single f-optimal policies is optimal for the weighted reward "
                "(Theorem 1, Eq. 5)", "`eval/theory.py`, exact", REPRODUCED if max(worst.values()) < 1e-9
                else NOT_REPRODUCED, "largest TV: " + ", ".join(f"{d} {g:.1e}" for d, g in worst.items()))
    ex = theory.theorem2_reverse_kl_example()
    merge_gap, lam = theory.best_merge(ex.merged_policy, ex.target(), m=3, steps=60)
    mod_gap = theory.total_variation(theory.mod_policy([ex.policy(t) for t in ex.thetas], ex.weights), ex.target())
    t2 = Claim("Theorem 2(ii)", "parameter merging cannot reach the optimum that MOD reaches (App. E.5)",
               "`eval/theory.py`, exact", REPRODUCED if merge_gap >= 1e-3 and mod_gap < 1e-9 else NOT_REPRODUCED,
               f"best merge TV {merge_gap:.4f} at lambda = ({', '.join(f'{x:.3f}' for x in lam)}); MOD TV {mod_gap:.1e}")
    return [eq5, t2]


def _singles_separate(s: Summary) -> tuple[bool, str]:
    """Whether each single policy beats every other single on its own objective (paired intervals)."""
    names = [p["name"] for p in s.info["policies"]]
    cells = {n: s.single_cell(SINGLE_PREFIX + n) for n in names}
    if any(c is None for c in cells.values()):
        return False, "single policies missing"
    parts, ok = [], True
    for i, n in enumerate(names):
        for m in names:
            if m == n:
                continue
            common = sorted(set(cells[n].per_prompt) & set(cells[m].per_prompt))
            d = paired_difference_ci([cells[n].per_prompt[p][i] for p in common],
                                     [cells[m].per_prompt[p][i] for p in common])
            ok &= _sign(d) > 0
            parts.append(f"{n} − {m} on {s.objectives[i]} {_ci(d)}")
    return ok, "; ".join(parts)


def frontier_claim(s: Summary | None, name: str, paper: str, ours: str, min_positive: int = 2) -> Claim:
    """MOD vs RS on the interior weightings (at least `min_positive` positive weights) of one run."""
    if s is None or not s.paired:
        return Claim("MOD vs RS frontier", paper, ours, NOT_RUN, "no MOD and RS rows")
    separate, why = _singles_separate(s)
    a, _, table = s.paired[0]
    interior = {w: p for w, p in table.items() if sum(x > 0 for x in w) >= min_positive}
    signs = [_sign(p.weighted) for p in interior.values()]
    wins, ties, losses = signs.count(1), signs.count(0), signs.count(-1)
    hv = s.hypervolume_cis
    numbers = (f"{name}: {a} − RS over {len(interior)} interior weightings: {wins} wins, {ties} ties, {losses} "
               f"losses; hypervolume {a} {_ci(hv[a], '.4g')} vs RS {_ci(hv['RS'], '.4g')}")
    if not separate:
        return Claim("MOD vs RS frontier", paper, ours, NOT_APPLICABLE, f"{numbers}. Singles do not separate: {why}")
    return Claim("MOD vs RS frontier", paper, ours, REPRODUCED if wins and not losses else NOT_REPRODUCED, numbers)


def negative_weights_claim(s: Summary | None, ours: str) -> Claim:
    paper = "a negative weight pushes an objective beyond its single policy (Table 1)"
    mods = [m for m in (s.methods if s else []) if m == "MOD" or m.startswith("MOD:")]
    if s is None or not mods:
        return Claim("Negative weights", paper, ours, NOT_RUN, "no MOD rows")
    names = [p["name"] for p in s.info["policies"]]
    results = []
    for i, n in enumerate(names):
        single = s.single_cell(SINGLE_PREFIX + n)
        ws = [w for w in s.weightings if w[i] > 1 and all(x <= 0 for j, x in enumerate(w) if j != i)]
        if single is None or not ws:
            continue
        w = max(ws, key=lambda v: v[i])
        cell = s.cells.get((mods[0], w))
        if cell is None:
            continue
        common = sorted(set(cell.per_prompt) & set(single.per_prompt))
        d = paired_difference_ci([cell.per_prompt[p][i] for p in common], [single.per_prompt[p][i] for p in common])
        results.append((n, w, d))
    if not results:
        return Claim("Negative weights", paper, ours, NOT_RUN, "no weighting (1 + t, −t) with its single policy")
    signs = [_sign(d) for _, _, d in results]
    verdict = REPRODUCED if 1 in signs and -1 not in signs else NOT_REPRODUCED
    return Claim("Negative weights", paper, ours, verdict, "; ".join(
        f"{s.objectives[names.index(n)]}: MOD at ({', '.join(f'{x:g}' for x in w)}) − {n} alone {_ci(d)}"
        for n, w, d in results))


def h1_claim(h1: dict | None) -> Claim:
    paper = "flipping Q and K signs leaves MOD unchanged but breaks parameter merging (App. H.1)"
    ours = "`scripts/h1_flip_experiment.py` (`h1.json`)"
    if not h1:
        return Claim("H.1", paper, ours, NOT_RUN, "no h1.json")
    rows = h1["rows"]
    interior = [r for r in rows if sum(x > 0 for x in r["weights"]) >= 2]
    mod_same = all(r["mod_identical"] == r["n"] for r in rows)
    rs_changed = sum(r["rs_identical"] < r["n"] for r in interior)
    drops = [r["rs_fluency"]["original"] - r["rs_fluency"]["flipped"] for r in interior]
    worse = sum(d > 0 for d in drops)
    ok = mod_same and rs_changed > 0 and worse > len(interior) / 2
    return Claim("H.1", paper, ours, REPRODUCED if ok else NOT_REPRODUCED,
                 f"{len(h1['prompts'])} prompts; logit gap {h1['logit_gap']:.1e}; MOD identical at "
                 f"{sum(r['mod_identical'] == r['n'] for r in rows)}"
                 f"/{len(rows)} weightings; RS changed at {rs_changed}/{len(interior)} interior weightings, less "
                 f"fluent at {worse}/{len(interior)} (largest drop {max(drops, default=0.0):.3f} nats/token)")


def claims_markdown(claims: Sequence[Claim]) -> str:
    """The claims table, then each rule used."""
    lines = ["| claim | paper | ours | verdict | numbers |", "|---|---|---|---|---|"]
    lines += [f"| {c.name} | {c.paper} | {c.ours} | **{c.verdict}** | {c.numbers} |" for c in claims]
    lines += ["", "Rules (95% paired bootstrap intervals over prompts, seed 0):", ""]
    lines += [f"- **{name}**: {rule}" for name, rule in RULES.items() if any(c.name == name for c in claims)]
    return "\n".join(lines) + "\n"
