"""`combine_logprobs`: the one pure function every decoding strategy goes through."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .divergences import Divergence, get_divergence, snap_weight_sums
from .errors import ConfigError, InfeasibleWeightsError, MissingReferenceError
from .weights import as_weight_tensor, missing_reference_message, reference_needed

Tensor = torch.Tensor
def combine_logprobs(
    logprobs: Tensor,
    weights: Sequence[float] | Tensor,
    divergence="reverse_kl",
    *,
    ref_logprobs: Tensor | None = None,
) -> Tensor:
    """Combine M policies' log-probabilities into MOD's log-score (paper Eq. 5/6).

    logprobs:     [M, ..., V] normalised log-probabilities of M policies (next-token or sequence level).
    weights:      M real numbers, or [M, ...] with one weight vector per leading batch position.
                  Not normalised; negative weights and sum(w) != 1 are allowed (a sum within 1e-6 of 1
                  counts as exactly 1). At most 1e6 in magnitude.
    divergence:   'reverse_kl', 'forward_kl', 'jsd', 'alpha:<a>' (0 < a < 1), a Divergence, or a
                  (grad_f, grad_f_inverse) pair of callables.
    ref_logprobs: [..., V] log-probabilities of pi_ref; required where the math depends on it.

    Returns [..., V]: l_ref + log (grad f)^-1(sum_i w_i grad f(pi_i/pi_ref)), -inf for tokens outside
    the domain of (grad f)^-1 or outside the support of a policy with non-zero weight; never NaN or
    +inf. Computed in float64; returned in the input's dtype, or float32 for half-precision inputs.
    Inputs are not modified. Raises InfeasibleWeightsError if some position has no feasible token.
    """
    div = get_divergence(divergence)
    if not isinstance(logprobs, torch.Tensor) or logprobs.dim() < 2:
        raise ConfigError("logprobs must be a tensor of shape [M, ..., V] (M policies, V tokens)")
    if not logprobs.is_floating_point():
        raise ConfigError(f"logprobs must be floating point, got {logprobs.dtype}")
    num_policies = logprobs.shape[0]
    # float64 whatever the input: fp16 overflows at 65504, and float32 rounding of the weights would
    # decide tokens whose scores differ by e^-40.
    l = logprobs.double()
    w = as_weight_tensor(weights, num_policies, device=l.device)
    batch_shape = l.shape[1:-1]
    if w.dim() > 1 and tuple(w.shape[1:]) != tuple(batch_shape[: w.dim() - 1]):
        raise ConfigError(
            f"weights of shape {tuple(w.shape)} do not match logprobs of shape {tuple(l.shape)}: "
            "use [M] or [M, *leading batch dims]"
        )
    w = w.reshape(tuple(w.shape) + (1,) * (l.dim() - w.dim()))
    wsum = snap_weight_sums(w.sum(dim=0))
    ref = None
    if ref_logprobs is not None:
        if tuple(ref_logprobs.shape) != tuple(l.shape[1:]):
            raise ConfigError(
                f"ref_logprobs has shape {tuple(ref_logprobs.shape)}, expected {tuple(l.shape[1:])} (logprobs without M)"
            )
        ref = ref_logprobs.double()
    elif reference_needed(div, w):
        raise MissingReferenceError(missing_reference_message(
            div, w, "pass the reference policy's log-probabilities as ref_logprobs"))

    score = div.log_score(l, w, ref, wsum)
    # Tokens outside the support of any policy that counts (non-zero weight, or the reference) are out.
    outside = (torch.isneginf(l) & (w != 0)).any(dim=0)
    if ref is not None:
        outside = outside | torch.isneginf(ref)
    feasible = ~(outside | torch.isnan(score) | torch.isneginf(score))
    score = torch.where(feasible, score, torch.full_like(score, -math.inf))
    out = _in_output_dtype(score, feasible, logprobs.dtype)
    infeasible_rows = (~feasible).all(dim=-1)
    if infeasible_rows.any():
        raise InfeasibleWeightsError(_infeasible_message(div, w, infeasible_rows, outside))
    return out


def _in_output_dtype(score: Tensor, feasible: Tensor, input_dtype: torch.dtype) -> Tensor:
    """The float64 score in the input's dtype (at least float32: half precision cannot hold scores of
    -70000), with feasible tokens kept finite by clamping to the dtype's range: never +inf, and never a
    feasible token turned into -inf by the cast."""
    dtype = torch.promote_types(input_dtype, torch.float32)
    info = torch.finfo(dtype)
    clamped = torch.where(feasible, score.clamp(min=info.min, max=info.max), score)
    return clamped.to(dtype)


def _infeasible_message(div: Divergence, w: Tensor, rows: Tensor, outside: Tensor) -> str:
    index = tuple(int(i) for i in rows.nonzero()[0])
    row_weights = w.expand(w.shape[0], *rows.shape, 1)[(slice(None), *index, 0)]
    vector = [round(float(x), 6) for x in row_weights]
    where = f" at batch position {index}" if index else ""
    if outside.expand(*rows.shape, outside.shape[-1])[index].all():
        return (f"no token is feasible under divergence {div.name!r} with weights {vector}{where}: every token lies "
                "outside the support of a policy with non-zero weight (or of the reference). Give zero weight to "
                "the policy that rules every token out.")
    remedy = "Use non-negative weights"
    if div.name != "reverse_kl":  # reverse KL's (grad f)^-1 = exp is defined everywhere
        remedy += ", or reverse_kl, whose domain allows any weights"
    return (f"no token is feasible under divergence {div.name!r} with weights {vector}{where}: (grad f)^-1 is "
            f"undefined for every token. {remedy}.")
