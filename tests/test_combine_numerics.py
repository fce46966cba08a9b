"""combine_logprobs where floating point bites: weight sums that round off 1, policies far above the
reference, half-precision inputs, absurd magnitudes. References are computed with mpmath at 80 digits."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from moddecode import ConfigError, InfeasibleWeightsError, combine_logprobs, get_divergence

mpmath.mp.dps = 80
DIVERGENCES = ["reverse_kl", "forward_kl", "jsd", "alpha:0.5", "alpha:0.3"]
WEIGHTS = [0.6, 0.3, 0.1]  # sums to 1 - 1.1e-16 in float64 and 1 + 3.7e-8 as float32


def mp_grad_f(name: str):
    if name == "reverse_kl":
        return lambda u: 1 + mpmath.log(u), lambda v: mpmath.exp(v - 1)
    if name == "forward_kl":
        return lambda u: -1 / u, lambda v: -1 / v
    if name == "jsd":
        return lambda u: mpmath.log(2 * u / (1 + u)), lambda v: mpmath.exp(v) / (2 - mpmath.exp(v))
    a = mpmath.mpf(name.split(":")[1])
    return lambda u: (1 - u ** -a) / a, lambda v: (1 - a * v) ** (-1 / a)


def mp_reference(name, logprobs, weights, ref):
    """Eq. (5) at 80 digits, with the weights scaled to sum to exactly 1 (what the user meant)."""
    grad_f, inverse = mp_grad_f(name)
    ws = [mpmath.mpf(w) for w in weights]
    total = sum(ws)
    ws = [w / total for w in ws]
    out = []
    for t in range(logprobs.shape[-1]):
        lr = mpmath.mpf(float(ref[t]))
        v = sum(w * grad_f(mpmath.exp(mpmath.mpf(float(l[t])) - lr)) for w, l in zip(ws, logprobs))
        out.append(float(lr + mpmath.log(inverse(v))))
    return torch.tensor(out, dtype=torch.float64)


def far_above_reference(gap: float, seed: int):
    """Three policies about `gap` nats above the reference on every token (as in scope='sequence')."""
    g = torch.Generator().manual_seed(seed)
    l = torch.log_softmax(torch.randn(3, 6, generator=g, dtype=torch.float64), -1) - 30
    ref = torch.log_softmax(torch.randn(6, generator=g, dtype=torch.float64), -1) - 30 - gap
    return l, ref


@pytest.mark.parametrize("gap", [20.0, 40.0, 80.0])
@pytest.mark.parametrize("name", DIVERGENCES)
def test_near_simplex_weights_are_exact_far_above_the_reference(name, gap):
    l, ref = far_above_reference(gap, seed=int(gap))
    got = combine_logprobs(l, WEIGHTS, name, ref_logprobs=ref)
    torch.testing.assert_close(got, mp_reference(name, l, WEIGHTS, ref), atol=1e-9, rtol=0)


@pytest.mark.parametrize("gap", [20.0, 40.0, 80.0])
@pytest.mark.parametrize("name", DIVERGENCES)
def test_permuting_policies_with_their_weights_changes_nothing(name, gap):
    l, ref = far_above_reference(gap, seed=1 + int(gap))
    got = combine_logprobs(l, WEIGHTS, name, ref_logprobs=ref)
    for order in ([2, 1, 0], [1, 2, 0], [0, 2, 1]):
        permuted = combine_logprobs(l[order], [WEIGHTS[i] for i in order], name, ref_logprobs=ref)
        torch.testing.assert_close(permuted, got, atol=1e-9, rtol=0)


@pytest.mark.parametrize("gap", [20.0, 40.0, 80.0])
@pytest.mark.parametrize("name", DIVERGENCES)
def test_list_and_float32_tensor_weights_agree(name, gap):
    l, ref = far_above_reference(gap, seed=2 + int(gap))
    from_list = combine_logprobs(l, WEIGHTS, name, ref_logprobs=ref)
    from_tensor = combine_logprobs(l, torch.tensor(WEIGHTS, dtype=torch.float32), name, ref_logprobs=ref)
    # the float32 weights differ by ~1e-8 relative: scores of tens of nats move by well under 1e-5
    torch.testing.assert_close(from_tensor, from_list, atol=1e-5, rtol=0)
    assert torch.equal(from_tensor.argmax(), from_list.argmax())


def test_half_precision_inputs_do_not_overflow():
    l = torch.tensor([[-700.0, -650.0], [-10.0, -12.0]], dtype=torch.float16)
    exact = 100 * l[0].double() - 99 * l[1].double()  # reverse KL on weights summing to 1
    got = combine_logprobs(l, [100.0, -99.0], "reverse_kl")
    assert torch.isfinite(got).all() and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), exact)
    swapped = combine_logprobs(l.flip(0), [-99.0, 100.0], "reverse_kl")
    torch.testing.assert_close(swapped, got)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_scores_are_never_positive_infinity(name):
    l, ref = far_above_reference(80.0, seed=3)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        got = combine_logprobs(l.to(dtype), WEIGHTS, name, ref_logprobs=ref.to(dtype))
        assert not torch.isposinf(got).any() and not torch.isnan(got).any()
        assert torch.isfinite(got).all()  # every token is feasible here: none may be cast to -inf


@pytest.mark.parametrize("weights", [[1e300, -1e300, 1.0], [1e308, 1e308, 0.0], [2e6, -1e6, 0.0]])
def test_absurd_weights_are_rejected_with_the_limit(weights):
    l, _ = far_above_reference(0.0, seed=4)
    with pytest.raises(ConfigError, match="between -1e\\+06 and 1e\\+06") as info:
        combine_logprobs(l, weights, "reverse_kl")
    assert "reverse_kl allows" not in str(info.value)


def test_boolean_weights_are_rejected():
    l, _ = far_above_reference(0.0, seed=5)
    with pytest.raises(ConfigError, match="real numbers"):
        combine_logprobs(l, [True, False, False], "reverse_kl")


@pytest.mark.parametrize("spec", ["alpha:1e-300", "alpha:1e-7", "alpha:0.99999999999999999"])
def test_alpha_too_close_to_0_or_1_is_rejected(spec):
    with pytest.raises(ConfigError, match="alpha"):
        get_divergence(spec)


def test_infeasible_message_never_suggests_the_divergence_that_failed():
    l = torch.log_softmax(torch.randn(2, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64), -1)
    l[0] = -math.inf  # policy 0 rules out every token
    with pytest.raises(InfeasibleWeightsError) as info:
        combine_logprobs(l, [0.5, 0.5], "reverse_kl")
    assert "support" in str(info.value) and "reverse_kl, whose" not in str(info.value)
    with pytest.raises(InfeasibleWeightsError, match="reverse_kl, whose domain"):
        combine_logprobs(l[1:].expand(2, 4), [-0.5, -0.5], "forward_kl")
