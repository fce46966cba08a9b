"""combine_logprobs against a brute-force numeric inversion of grad f, for every divergence."""

from __future__ import annotations

import math

import pytest
import torch

from moddecode import (
    ConfigError,
    InfeasibleWeightsError,
    MissingReferenceError,
    UnknownNameError,
    combine_logprobs,
    get_divergence,
)

# grad f written out independently of the library; the reference inverts it by bisection.
GRAD_F = {
    "reverse_kl": lambda u: 1 + math.log(u),
    "forward_kl": lambda u: -1 / u,
    "jsd": lambda u: math.log(2 * u / (1 + u)),
    "alpha:0.5": lambda u: (1 - u**-0.5) / 0.5,
    "alpha:0.3": lambda u: (1 - u**-0.3) / 0.3,
}


def numeric_inverse(grad_f, v: float) -> float | None:
    """u with grad_f(u) = v, found by bisection on log u; None if v is outside grad_f's range."""
    lo, hi = -60.0, 60.0
    if not grad_f(math.exp(lo)) < v < grad_f(math.exp(hi)):
        return None
    for _ in range(200):
        mid = (lo + hi) / 2
        if grad_f(math.exp(mid)) < v:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def brute_force(name, logprobs, weights, ref):
    """Eq. (5) token by token: l_ref + log (grad f)^-1(sum_i w_i grad f(pi_i/pi_ref))."""
    grad_f = GRAD_F[name]
    out = []
    for t in range(logprobs.shape[-1]):
        v = sum(w * grad_f(math.exp(float(l[t]) - float(ref[t]))) for w, l in zip(weights, logprobs))
        u = numeric_inverse(grad_f, v)
        out.append(-math.inf if u is None else float(ref[t]) + math.log(u))
    return torch.tensor(out, dtype=torch.float64)


def random_logprobs(m, v, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(m, v, generator=g, dtype=torch.float64) * 1.5, dim=-1)


WEIGHT_CASES = {
    "simplex": [0.3, 0.7],
    "one_hot": [1.0, 0.0],
    "three_simplex": [0.2, 0.5, 0.3],
    "negative": [1.4, -0.4],
    "sum_not_one": [0.6, 0.9],
    "three_negative": [0.8, 0.5, -0.3],
}


@pytest.mark.parametrize("name", list(GRAD_F))
@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_closed_form_matches_brute_force(name, case):
    weights = WEIGHT_CASES[case]
    # a fixed seed per case (hash() of a string changes from process to process)
    logprobs = random_logprobs(len(weights), 6, seed=100 * list(GRAD_F).index(name) + list(WEIGHT_CASES).index(case))
    ref = random_logprobs(1, 6, seed=7)[0]
    expected = brute_force(name, logprobs, weights, ref)
    if torch.isneginf(expected).all():
        with pytest.raises(InfeasibleWeightsError):
            combine_logprobs(logprobs, weights, name, ref_logprobs=ref)
        return
    got = combine_logprobs(logprobs, weights, name, ref_logprobs=ref)
    assert not torch.isnan(got).any()
    assert torch.equal(torch.isneginf(got), torch.isneginf(expected))
    finite = torch.isfinite(expected)
    torch.testing.assert_close(got[finite], expected[finite], atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl", "alpha:0.5", "alpha:0.3"])
def test_simplex_weights_need_no_reference(name):
    weights = [0.25, 0.75]
    logprobs = random_logprobs(2, 8, seed=3)
    ref = random_logprobs(1, 8, seed=4)[0]
    torch.testing.assert_close(
        combine_logprobs(logprobs, weights, name), combine_logprobs(logprobs, weights, name, ref_logprobs=ref)
    )


def test_forward_kl_never_needs_reference_even_off_simplex():
    logprobs = random_logprobs(2, 8, seed=5)
    ref = random_logprobs(1, 8, seed=6)[0]
    torch.testing.assert_close(
        combine_logprobs(logprobs, [0.5, 1.5], "forward_kl"),
        combine_logprobs(logprobs, [0.5, 1.5], "forward_kl", ref_logprobs=ref),
    )


def test_reverse_kl_simplex_is_weighted_sum_of_logprobs():
    logprobs = random_logprobs(3, 10, seed=8)
    w = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    torch.testing.assert_close(combine_logprobs(logprobs, w), (w[:, None] * logprobs).sum(0))


@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl", "jsd", "alpha:0.5"])
def test_one_hot_weight_reproduces_that_policy(name):
    logprobs = random_logprobs(3, 7, seed=9)
    ref = random_logprobs(1, 7, seed=10)[0]
    got = combine_logprobs(logprobs, [0.0, 1.0, 0.0], name, ref_logprobs=ref)
    torch.testing.assert_close(got, logprobs[1])


@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl", "jsd", "alpha:0.5", "alpha:0.3"])
def test_generic_callable_pair_agrees_with_closed_form(name):
    div = get_divergence(name)
    logprobs = random_logprobs(3, 9, seed=11)
    ref = random_logprobs(1, 9, seed=12)[0]
    for weights in ([0.2, 0.5, 0.3], [0.9, 0.4, -0.2]):
        closed = combine_logprobs(logprobs, weights, name, ref_logprobs=ref)
        generic = combine_logprobs(logprobs, weights, (div.grad_f, div.grad_f_inverse), ref_logprobs=ref)
        assert torch.equal(torch.isneginf(closed), torch.isneginf(generic))
        finite = torch.isfinite(closed)
        torch.testing.assert_close(closed[finite], generic[finite])


def test_generic_path_requires_reference():
    div = get_divergence("forward_kl")
    with pytest.raises(ConfigError, match="ref_logprobs"):
        combine_logprobs(random_logprobs(2, 4, 0), [0.5, 0.5], (div.grad_f, div.grad_f_inverse))


def test_per_row_weights_equal_separate_calls():
    logprobs = torch.log_softmax(torch.randn(2, 4, 11, dtype=torch.float64), dim=-1)
    rows = torch.tensor([[0.0, 1.0], [0.3, 0.7], [1.0, 0.0], [1.2, -0.2]], dtype=torch.float64)
    for name in ["reverse_kl", "forward_kl", "alpha:0.5"]:
        together = combine_logprobs(logprobs, rows.T, name)
        for b in range(4):
            torch.testing.assert_close(together[b], combine_logprobs(logprobs[:, b], rows[b], name))


def test_zero_weight_policy_with_minus_inf_never_gives_nan():
    logprobs = random_logprobs(2, 5, seed=13).clone()
    logprobs[1, 2] = -math.inf  # the zero-weight policy rules this token out; it must not matter
    ref = random_logprobs(1, 5, seed=14)[0]
    for name in ["reverse_kl", "forward_kl", "jsd", "alpha:0.5"]:
        got = combine_logprobs(logprobs, [1.0, 0.0], name, ref_logprobs=ref)
        assert not torch.isnan(got).any()
        torch.testing.assert_close(got, logprobs[0])


def test_token_outside_a_weighted_policys_support_is_infeasible():
    logprobs = random_logprobs(2, 5, seed=15).clone()
    logprobs[1, 3] = -math.inf
    for name in ["reverse_kl", "forward_kl", "alpha:0.5"]:
        got = combine_logprobs(logprobs, [0.5, 0.5], name)
        assert torch.isneginf(got[3]) and torch.isfinite(got[[0, 1, 2, 4]]).all()
        got_negative = combine_logprobs(logprobs, [1.5, -0.5], name)
        assert torch.isneginf(got_negative[3]) and not torch.isnan(got_negative).any()


def test_negative_weights_make_some_forward_kl_tokens_infeasible():
    # sum_i w_i / pi_i > 0 fails where policy 2 is much less likely than policy 1
    logprobs = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.05, 0.15, 0.8]], dtype=torch.float64))
    got = combine_logprobs(logprobs, [1.5, -0.5], "forward_kl")
    assert torch.isneginf(got[0]) and torch.isfinite(got[1:]).all()


def test_all_infeasible_raises_naming_weights_and_divergence():
    logprobs = random_logprobs(2, 5, seed=16)
    with pytest.raises(InfeasibleWeightsError, match=r"forward_kl.*\[-0\.5, -0\.5\]"):
        combine_logprobs(logprobs, [-0.5, -0.5], "forward_kl")


def test_does_not_modify_inputs():
    logprobs = random_logprobs(2, 6, seed=17)
    ref = random_logprobs(1, 6, seed=18)[0]
    weights = torch.tensor([0.6, 0.6], dtype=torch.float64)
    copies = (logprobs.clone(), ref.clone(), weights.clone())
    for name in ["reverse_kl", "forward_kl", "jsd", "alpha:0.5"]:
        combine_logprobs(logprobs, weights, name, ref_logprobs=ref)
    for before, after in zip(copies, (logprobs, ref, weights)):
        assert torch.equal(before, after)


def test_unknown_divergence_suggests_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'forward_kl'"):
        combine_logprobs(random_logprobs(2, 3, 0), [0.5, 0.5], "forwrd_kl")


@pytest.mark.parametrize("bad", ["alpha:1.5", "alpha:0", "alpha:abc"])
def test_bad_alpha_is_rejected(bad):
    with pytest.raises(ConfigError, match="alpha"):
        combine_logprobs(random_logprobs(2, 3, 0), [0.5, 0.5], bad)


@pytest.mark.parametrize("name", ["reverse_kl", "alpha:0.5", "jsd"])
def test_missing_reference_is_reported(name):
    weights = [0.5, 0.5] if name == "jsd" else [0.7, 0.7]
    with pytest.raises(MissingReferenceError, match="ref"):
        combine_logprobs(random_logprobs(2, 3, 0), weights, name)


@pytest.mark.parametrize(
    "weights, match",
    [([0.5], "1 weight"), ([0.1, float("nan")], "finite"), (["a", "b"], "real numbers")],
)
def test_bad_weights_are_rejected(weights, match):
    with pytest.raises(ConfigError, match=match):
        combine_logprobs(random_logprobs(2, 3, 0), weights)


def test_bad_shapes_are_rejected():
    with pytest.raises(ConfigError, match=r"\[M, \.\.\., V\]"):
        combine_logprobs(torch.zeros(5), [1.0])
    with pytest.raises(ConfigError, match="ref_logprobs has shape"):
        combine_logprobs(random_logprobs(2, 3, 0), [0.5, 0.5], "jsd", ref_logprobs=torch.zeros(4))


def test_alpha_inverse_is_undefined_outside_its_domain():
    # (1 - a v)^(-1/a) is real for a = 0.5 even when 1 - a v < 0; it must still count as infeasible
    div = get_divergence("alpha:0.5")
    v = torch.tensor([1.0, 2.5, 3.0], dtype=torch.float64)
    out = div.grad_f_inverse(v)
    assert torch.isfinite(out[0]) and torch.isnan(out[1:]).all()


def test_alpha_values_parse_exactly():
    assert get_divergence("alpha:1e-3").alpha == 0.001
    precise = get_divergence("alpha:0.123456789")
    assert precise.alpha == 0.123456789 and get_divergence(precise.name).alpha == precise.alpha
    assert get_divergence(" Alpha = 0.25 ").alpha == 0.25
    with pytest.raises(ConfigError, match="<= alpha < 1"):
        get_divergence("alpha:-0.5")
    assert get_divergence("Forward-KL").name == "forward_kl"
