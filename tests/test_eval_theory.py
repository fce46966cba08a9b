"""Exact tabular checks of Eq. (5) (MOD = optimum of the weighted reward) and Theorem 2 (merging fails)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moddecode.divergences import get_divergence
from moddecode.errors import ConfigError
from moddecode.eval.theory import (
    best_merge,
    f_mod_policy,
    f_optimal_policy,
    log_linear_merging_gap,
    mod_policy,
    optimal_policy,
    theorem2_iii_residual,
    theorem2_reverse_kl_example,
    total_variation,
)

DIVERGENCES = ["reverse_kl", "forward_kl", "jsd", "alpha:0.3", "alpha:0.5"]


def brute_force_objective_max(ref, reward, beta, candidates):
    """The best of many random policies under E_pi[R] - beta KL(pi || ref): never better than the optimum."""

    def objective(p):
        return float(p @ reward - beta * np.sum(p * np.log(p / ref)))

    return max(objective(p) for p in candidates), objective


def test_optimal_policy_maximises_the_kl_objective():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(5))
    reward = rng.normal(size=5)
    pi = optimal_policy(ref, reward, beta=0.7)
    best_random, objective = brute_force_objective_max(ref, reward, 0.7, rng.dirichlet(np.ones(5), size=5000))
    assert objective(pi) >= best_random
    # the closed form pi ∝ ref exp(R/beta), checked elementwise
    unnorm = ref * np.exp(reward / 0.7)
    np.testing.assert_allclose(pi, unnorm / unnorm.sum(), rtol=1e-12)


@pytest.mark.parametrize("weights", [(0.2, 0.5, 0.3), (1.5, -0.25, -0.25), (0.0, 1.0, 0.0)])
def test_mod_product_equals_optimum_of_weighted_reward(weights):
    rng = np.random.default_rng(1)
    ref = rng.dirichlet(np.ones(6))
    rewards = rng.normal(size=(3, 6))
    beta = 0.5
    pis = np.stack([optimal_policy(ref, r, beta) for r in rewards])
    combined = mod_policy(pis, weights)
    target = optimal_policy(ref, np.asarray(weights) @ rewards, beta)
    np.testing.assert_allclose(combined, target, rtol=1e-10, atol=1e-14)


def test_mod_with_weights_off_the_simplex_needs_ref():
    rng = np.random.default_rng(2)
    ref = rng.dirichlet(np.ones(4))
    rewards = rng.normal(size=(2, 4))
    pis = np.stack([optimal_policy(ref, r, 1.0) for r in rewards])
    w = (0.7, 0.6)  # sum 1.3 (DeRa-like): pi ∝ ref^(1 - sum w) prod pi_i^w_i
    np.testing.assert_allclose(
        mod_policy(pis, w, ref=ref), optimal_policy(ref, np.asarray(w) @ rewards, 1.0), rtol=1e-10
    )
    with pytest.raises(ConfigError, match="pass ref"):
        mod_policy(pis, w)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_f_optimal_policy_satisfies_eq3_and_reduces_to_softmax(divergence):
    rng = np.random.default_rng(3)
    ref = rng.dirichlet(np.ones(5))
    reward = rng.normal(size=5)
    beta = 0.8
    pi = f_optimal_policy(ref, reward, beta, divergence)
    assert pi.sum() == pytest.approx(1.0) and np.all(pi > 0)
    # Eq. (3): R/beta - grad f(pi/ref) is the same constant Z for every response.
    grad = get_divergence(divergence).grad_f(torch.tensor(pi / ref, dtype=torch.float64)).numpy()
    z = reward / beta - grad
    assert np.ptp(z) < 1e-9
    if divergence == "reverse_kl":
        np.testing.assert_allclose(pi, optimal_policy(ref, reward, beta), rtol=1e-9)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_f_mod_recovers_the_weighted_optimum(divergence):
    rng = np.random.default_rng(4)
    ref = rng.dirichlet(np.ones(5))
    rewards = rng.normal(size=(2, 5))
    w, beta = np.array([0.35, 0.65]), 0.6
    pis = np.stack([f_optimal_policy(ref, r, beta, divergence) for r in rewards])
    np.testing.assert_allclose(
        f_mod_policy(ref, pis, w, divergence),
        f_optimal_policy(ref, w @ rewards, beta, divergence),
        rtol=1e-8,
        atol=1e-12,
    )


def test_theorem2_ii_construction_is_as_in_the_paper():
    ex = theorem2_reverse_kl_example()
    # each theta_i is the optimal policy for R_i, and merging gives logits lambda_i^2
    for i, theta in enumerate(ex.thetas):
        np.testing.assert_allclose(ex.policy(theta), optimal_policy(ex.ref, ex.rewards[i], ex.beta), rtol=1e-12)
    lam = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(ex.merged_policy(lam), np.exp(lam**2) / np.exp(lam**2).sum(), rtol=1e-12)
    # MOD of the three single-objective optima reaches the target exactly
    pis = np.stack([ex.policy(t) for t in ex.thetas])
    np.testing.assert_allclose(mod_policy(pis, ex.weights), ex.target(), rtol=1e-12)


def test_theorem2_ii_no_merging_weight_reaches_the_optimum():
    ex = theorem2_reverse_kl_example()
    # The paper's certificate: logits lambda^2 = (t, t+1/3, t+2/3) force sum(lambda) > 1 for every t >= 0.
    t = np.linspace(0, 5, 1001)
    assert np.all(np.sqrt(t) + np.sqrt(t + 1 / 3) + np.sqrt(t + 2 / 3) > 1.39)
    gap, lam = best_merge(ex.merged_policy, ex.target(), m=3, steps=120)
    assert lam.sum() == pytest.approx(1.0) and np.all(lam >= 0)
    coarse_gap, _ = best_merge(ex.merged_policy, ex.target(), m=3, steps=30, refine_rounds=0)
    assert 0.02 < gap <= coarse_gap  # refining does not close the gap: it is bounded away from 0
    assert total_variation(mod_policy(np.stack([ex.policy(t) for t in ex.thetas]), ex.weights), ex.target()) < 1e-12


def test_theorem2_iii_log_linear_merging_works_only_for_reverse_kl():
    gap, lam, _ = log_linear_merging_gap("reverse_kl", beta=1.0)
    assert gap < 1e-12 and lam == pytest.approx([0.5, 0.5])
    for divergence in ["forward_kl", "jsd", "alpha:0.5"]:
        gap, lam, target = log_linear_merging_gap(divergence, beta=1.0)
        assert gap > 1e-3, divergence
        assert target[0] == pytest.approx(target[1])  # symmetric optimum; best lambda is the symmetric one
        assert lam == pytest.approx([0.5, 0.5], abs=1e-3)


def test_theorem2_iii_residual():
    x = np.linspace(0.01, 0.49, 49)
    np.testing.assert_allclose(theorem2_iii_residual("reverse_kl", x), 0.0, atol=1e-12)
    r = theorem2_iii_residual("forward_kl", x)
    assert np.count_nonzero(np.abs(r) > 1e-6) >= len(x) - 2  # finitely many roots (x = 1/3 is one)
    with pytest.raises(ConfigError):
        theorem2_iii_residual("forward_kl", [0.5])
    assert math.isfinite(float(theorem2_iii_residual("jsd", 0.2)))
