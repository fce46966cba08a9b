"""Exact tabular checks of the paper's claims on a finite response set Y = {y_1, ..., y_N}.

Everything here is a probability vector over Y (numpy float64, last axis = responses).

(a) Eq. (3) and the warm-up combination of Section 3.1. For an f-divergence regulariser the policy
    maximising E_pi[R] - beta I_f(pi || pi_ref) is pi = pi_ref (grad f)^-1(R/beta - Z), Z normalising
    (`f_optimal_policy`; reverse KL: pi ∝ pi_ref exp(R/beta), `optimal_policy`). Combining the
    single-objective optima pi_i with Eq. (5) - for reverse KL the normalised product prod_i pi_i^w_i
    (`mod_policy`), in general pi_ref (grad f)^-1(sum_i w_i grad f(pi_i/pi_ref) - Z) (`f_mod_policy`) -
    gives exactly the optimum for sum_i w_i R_i.

(b) Theorem 2 / Appendix E.5: parameter merging (Rewarded Soups, theta = sum_i lambda_i theta_i,
    lambda in the simplex) cannot always reach that optimum.
    (ii) reverse KL, N = M = 3, rewards R_i(y_j) = delta_ij, pi_ref uniform, beta = 1, z0 = 1 and the
         ReLU network h_theta(z0) = W2 relu(W1 z0) with theta_i = (W1 = e_i, W2 = e_i e_i^T). Merging
         gives logits (lambda_1^2, lambda_2^2, lambda_3^2); the optimum for w = (0, 1/3, 2/3) needs
         logits (t, t + 1/3, t + 2/3), impossible with sum(lambda) = 1 because
         sqrt(t) + sqrt(t + 1/3) + sqrt(t + 2/3) >= sqrt(1/3) + sqrt(2/3) > 1.
         `theorem2_reverse_kl_example` builds it; `best_merge` searches lambda numerically.
    (iii) N = 3, M = 2, R_i = delta_i, pi_ref uniform, the linear ("logit table") network
         h_theta(z0) = W_theta z0 with W_theta_i = log pi_i, so merging is softmax(sum lambda_i log pi_i).
         For reverse KL this *is* MOD and the gap is 0; for other strong-barrier f it is not
         (`log_linear_merging_gap`). `theorem2_iii_residual` is the paper's root condition (Eq. 26).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..divergences import Divergence, get_divergence
from ..errors import ConfigError
from .grids import simplex_lattice

_SUM_TOL = 1e-9


def _as_prob(p, what: str) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] == 0:
        raise ConfigError(f"{what} must be a probability vector over responses, got shape {arr.shape}")
    if np.any(~np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(f"{what} must be finite and non-negative")
    total = arr.sum(axis=-1, keepdims=True)
    if np.any(np.abs(total - 1) > 1e-6):
        raise ConfigError(f"{what} must sum to 1 over the last axis (sums: {np.ravel(total)[:4].tolist()})")
    return arr / total


def _check_beta(beta: float) -> float:
    if not (isinstance(beta, (int, float)) and beta > 0 and math.isfinite(beta)):
        raise ConfigError(f"beta must be a positive number, got {beta!r}")
    return float(beta)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _safe_log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)


def optimal_policy(ref, reward, beta: float) -> np.ndarray:
    """Reverse-KL optimum pi ∝ pi_ref exp(R / beta).

    ref: [..., N] probabilities; reward: [..., N] (broadcast against ref). Returns [..., N].
    """
    ref = _as_prob(ref, "ref")
    beta = _check_beta(beta)
    return _softmax(_safe_log(ref) + np.asarray(reward, dtype=np.float64) / beta)


def _weights(weights, m: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (m,) or not np.all(np.isfinite(w)):
        raise ConfigError(f"need {m} finite weights (one per policy), got {np.asarray(weights).tolist()}")
    return w


def mod_policy(policies, weights, ref=None) -> np.ndarray:
    """MOD under reverse KL: pi ∝ pi_ref^(1 - sum w) prod_i pi_i^w_i (Eq. 7 made a distribution).

    policies: [M, ..., N]; weights: [M]. When sum(w) = 1 the reference cancels and may be omitted;
    otherwise pass ref ([..., N]). A policy with weight 0 contributes nothing, even where it is 0.
    """
    pis = np.asarray(policies, dtype=np.float64)
    w = _weights(weights, pis.shape[0])
    for i in range(pis.shape[0]):
        _as_prob(pis[i], f"policies[{i}]")
    slack = 1.0 - w.sum()
    if ref is None and abs(slack) > _SUM_TOL:
        raise ConfigError(f"weights sum to {w.sum():g}, not 1: pass ref (the reference policy) as well")
    logs = _safe_log(pis)
    wb = w.reshape((-1,) + (1,) * (pis.ndim - 1))
    score = np.where(wb == 0, 0.0, wb * logs).sum(axis=0)
    if ref is not None and slack != 0:
        score = score + slack * _safe_log(_as_prob(ref, "ref"))
    return _softmax(score)


def _divergence_fns(divergence) -> tuple[Callable, Callable, Divergence]:
    div = get_divergence(divergence)

    def grad(u: np.ndarray) -> np.ndarray:
        return div.grad_f(torch.as_tensor(u, dtype=torch.float64)).numpy()

    def inverse(v: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return div.grad_f_inverse(torch.as_tensor(v, dtype=torch.float64)).numpy()

    return grad, inverse, div


def _normalise_shift(ref: np.ndarray, v: np.ndarray, grad: Callable, inverse: Callable, name: str) -> np.ndarray:
    """pi = ref * inverse(v - Z) with Z chosen (bisection) so that sum(pi) = 1. 1-D only.

    The sum is decreasing in Z (grad f is increasing); Z too small leaves the domain of (grad f)^-1,
    which counts as "sum too large". Membership in the domain is checked by the round trip
    grad f(inverse(v)) = v, because a closed-form inverse can return a positive number outside it
    (e.g. (1 - a v)^(-1/a) for a = 1/2 and v > 2).
    """
    support = ref > 0

    def total(z: float) -> float:
        target = v[support] - z
        with np.errstate(all="ignore"):
            x = inverse(target)
            if np.any(~np.isfinite(x)) or np.any(x <= 0):
                return math.inf
            if not np.allclose(grad(x), target, rtol=1e-6, atol=1e-9):
                return math.inf
        return float(np.sum(ref[support] * x))

    hi = float(np.max(v[support])) + 1.0
    step = 1.0
    while total(hi) >= 1:
        hi += step
        step *= 2
        if step > 1e12:
            raise ConfigError(f"could not normalise the policy for divergence {name!r}")
    lo, step = hi - 1.0, 1.0
    while total(lo) < 1:
        lo -= step
        step *= 2
        if step > 1e12:
            raise ConfigError(f"could not normalise the policy for divergence {name!r}")
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if total(mid) >= 1 else (lo, mid)
    out = np.zeros_like(ref)
    out[support] = ref[support] * inverse(v[support] - hi)
    return out / out.sum()


def f_optimal_policy(ref, reward, beta: float, divergence="reverse_kl") -> np.ndarray:
    """Optimum of E_pi[R] - beta I_f(pi || pi_ref): pi = pi_ref (grad f)^-1(R/beta - Z) (Eq. 3). 1-D, [N]."""
    ref = _as_prob(ref, "ref")
    if ref.ndim != 1:
        raise ConfigError("f_optimal_policy works on one distribution at a time (ref of shape [N])")
    beta = _check_beta(beta)
    grad, inverse, div = _divergence_fns(divergence)
    return _normalise_shift(ref, np.asarray(reward, dtype=np.float64) / beta, grad, inverse, div.name)


def f_mod_policy(ref, policies, weights, divergence="reverse_kl") -> np.ndarray:
    """Section 3.1 combination: pi ∝ pi_ref (grad f)^-1(sum_i w_i grad f(pi_i / pi_ref) - Z), normalised exactly.

    ref: [N]; policies: [M, N]; weights: [M]. Its argmax is Eq. (5); with the normaliser it equals
    f_optimal_policy(ref, sum_i w_i R_i, beta) when each pi_i is the f-optimum for R_i.
    """
    ref = _as_prob(ref, "ref")
    pis = np.asarray(policies, dtype=np.float64)
    if ref.ndim != 1 or pis.ndim != 2 or pis.shape[1] != ref.shape[0]:
        raise ConfigError(f"need ref [N] and policies [M, N]; got {ref.shape} and {pis.shape}")
    w = _weights(weights, pis.shape[0])
    grad, inverse, div = _divergence_fns(divergence)
    support = ref > 0
    v = np.zeros_like(ref)
    terms = np.stack([grad(pis[i, support] / ref[support]) for i in range(pis.shape[0])])
    v[support] = np.where(w[:, None] == 0, 0.0, w[:, None] * terms).sum(axis=0)
    return _normalise_shift(ref, v, grad, inverse, div.name)


def total_variation(p, q) -> float:
    """0.5 * sum |p - q| (in [0, 1])."""
    return 0.5 * float(np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum())


def best_merge(
    policy_of: Callable[[np.ndarray], np.ndarray], target, m: int, steps: int = 200, refine_rounds: int = 6
) -> tuple[float, np.ndarray]:
    """min over merging weights lambda in the simplex of TV(policy_of(lambda), target), and its argmin.

    Grid search on the simplex lattice with `steps`, then `refine_rounds` rounds of a finer local
    lattice around the incumbent (radius shrinking 10x per round). A numerical minimum: an upper bound
    on the true infimum, tight to the final resolution (~ 1/steps * 10^-rounds in lambda).
    """
    target = np.asarray(target, dtype=np.float64)
    cands = np.array(simplex_lattice(m, steps))
    gaps = np.array([total_variation(policy_of(lam), target) for lam in cands])
    best = int(np.argmin(gaps))
    best_lam, best_gap = cands[best], float(gaps[best])
    radius = 1.0 / steps
    offsets = np.array(simplex_lattice(m, 10)) - 1.0 / m  # a small star of directions summing to 0
    for _ in range(refine_rounds):
        for off in offsets:
            for scale in (radius, radius / 3):
                lam = best_lam + off * scale * m
                if np.any(lam < 0):
                    continue
                lam = lam / lam.sum()
                gap = total_variation(policy_of(lam), target)
                if gap < best_gap:
                    best_gap, best_lam = gap, lam
        radius /= 10
    return best_gap, best_lam


@dataclass(frozen=True)
class ReluMergingExample:
    """Theorem 2(ii) of the paper (reverse KL). Shapes: ref [3], rewards [M=3, N=3], weights [3],
    thetas: per objective (W1 [3, 1], W2 [3, 3]); z0 [1]."""

    ref: np.ndarray
    rewards: np.ndarray
    beta: float
    weights: np.ndarray
    thetas: tuple[tuple[np.ndarray, np.ndarray], ...]
    z0: np.ndarray

    def policy(self, theta: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """softmax(h_theta(z0)) with h_theta(z0) = W2 relu(W1 z0)."""
        w1, w2 = theta
        return _softmax(w2 @ np.maximum(w1 @ self.z0, 0.0))

    def merged_policy(self, lambdas) -> np.ndarray:
        """Policy of the merged parameters theta = sum_i lambda_i theta_i."""
        lam = np.asarray(lambdas, dtype=np.float64)
        w1 = sum(l * t[0] for l, t in zip(lam, self.thetas))
        w2 = sum(l * t[1] for l, t in zip(lam, self.thetas))
        return self.policy((w1, w2))

    def target(self) -> np.ndarray:
        """The optimal policy for sum_i w_i R_i under beta KL(. || ref)."""
        return optimal_policy(self.ref, self.weights @ self.rewards, self.beta)


def theorem2_reverse_kl_example() -> ReluMergingExample:
    """The construction of Appendix E.5 (ii), exactly as written there."""
    eye = np.eye(3)
    thetas = tuple((eye[:, [i]], np.outer(eye[i], eye[i])) for i in range(3))
    return ReluMergingExample(
        ref=np.full(3, 1 / 3),
        rewards=eye.copy(),  # R_i(y_j) = delta_ij
        beta=1.0,
        weights=np.array([0.0, 1 / 3, 2 / 3]),
        thetas=thetas,
        z0=np.array([1.0]),
    )


def log_linear_merging_gap(
    divergence, beta: float = 1.0, weights: Sequence[float] = (0.5, 0.5), steps: int = 400
) -> tuple[float, np.ndarray, np.ndarray]:
    """Theorem 2(iii) setting: (min_lambda TV(merged, optimum), best lambda, optimum).

    N = 3, M = 2, R_i = delta_i, pi_ref uniform; theta_i = log pi_i (logit table of the f-optimal
    policy for R_i), merged policy softmax(lambda_1 theta_1 + lambda_2 theta_2), optimum
    f_optimal_policy(ref, w_1 R_1 + w_2 R_2, beta).
    """
    ref = np.full(3, 1 / 3)
    rewards = np.eye(3)[:2]
    pis = np.stack([f_optimal_policy(ref, r, beta, divergence) for r in rewards])
    thetas = np.log(pis)
    target = f_optimal_policy(ref, _weights(weights, 2) @ rewards, beta, divergence)
    gap, lam = best_merge(lambda lam: _softmax(lam @ thetas), target, m=2, steps=steps)
    return gap, lam, target


def theorem2_iii_residual(divergence, x) -> np.ndarray:
    """2 grad f(3 sqrt(1-2x) / D) - 2 grad f(3 sqrt(x) / D) - grad f(3 - 6x) + grad f(3x), D = 2 sqrt(1-2x) + sqrt(x).

    x in (0, 1/2) plays b = pi_1(y_2) of Appendix E.5; merging can match the optimum at w = (1/2, 1/2)
    only where this is 0. It is identically 0 for reverse KL.
    """
    grad, _, _ = _divergence_fns(divergence)
    x = np.asarray(x, dtype=np.float64)
    if np.any((x <= 0) | (x >= 0.5)):
        raise ConfigError("x must lie in (0, 1/2)")
    a = 1 - 2 * x
    d = 2 * np.sqrt(a) + np.sqrt(x)
    return 2 * grad(3 * np.sqrt(a) / d) - 2 * grad(3 * np.sqrt(x) / d) - grad(3 * a) + grad(3 * x)
