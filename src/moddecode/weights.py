"""One owner of a weighting: validation, the weight matrix, and whether the reference must run.

Weights are real numbers, one per policy (negative and sum != 1 allowed, never normalised). Every
edge (library, CLI, server, sweeps) validates them here, once, and asks the `Weighting` whether the
reference policy is needed and whether some tokens may be infeasible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .divergences import Divergence
from .errors import ConfigError, MissingReferenceError

Tensor = torch.Tensor
# Larger weights overflow float64 scores or cancel away their precision (w_i * l_i with l_i up to
# thousands of nats must stay far below 1e16 to keep fractions of a nat); no recipe needs them.
MAX_ABS_WEIGHT = 1e6


def _has_bool(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.bool
    if isinstance(value, (list, tuple)):
        return any(_has_bool(v) for v in value)
    return isinstance(value, bool)


def as_weight_tensor(weights, num_policies: int, *, dtype=torch.float64, device=None) -> Tensor:
    """Validate weights: [M] or [M, ...] real, finite numbers of magnitude <= MAX_ABS_WEIGHT.

    Returns a new tensor (never normalised)."""
    if _has_bool(weights) or isinstance(weights, (str, bytes)):
        raise ConfigError(f"weights must be real numbers, got {weights!r}", param="weights")
    try:
        w = torch.as_tensor(weights, dtype=torch.float64).to(device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"weights must be real numbers, got {weights!r}", param="weights") from None
    if w.dim() == 0 or w.shape[0] != num_policies:
        got = 1 if w.dim() == 0 else w.shape[0]
        raise ConfigError(
            f"got {got} weight(s) for {num_policies} policies; give one weight per policy, e.g. "
            f"{','.join(['0.5'] * num_policies) if num_policies else '...'}", param="weights"
        )
    if not torch.isfinite(w).all():
        raise ConfigError(f"weights must be finite numbers, got {weights!r}", param="weights")
    too_big = w.abs() > MAX_ABS_WEIGHT
    if too_big.any():
        worst = float(w.reshape(-1)[w.abs().reshape(-1).argmax()])
        raise ConfigError(
            f"weights must lie between -{MAX_ABS_WEIGHT:g} and {MAX_ABS_WEIGHT:g}, got {worst:g}: larger weights "
            "overflow the combined score or cancel away its precision; scale them down", param="weights"
        )
    return w.to(dtype)


def reference_needed(divergence: Divergence, weights: Tensor) -> bool:
    """Whether any weight vector in `weights` ([M, ...]) needs the reference under `divergence`."""
    sums = weights.double().sum(dim=0).reshape(-1).tolist()  # one device sync, not one per row
    return any(divergence.needs_reference(s) for s in set(sums))


def describe_weight_sums(wsum: Tensor) -> str:
    """The distinct sums of weight vectors, for error messages ("0.7, 1.4")."""
    values = sorted({round(float(s), 6) for s in wsum.reshape(-1)})
    return ", ".join(f"{v:g}" for v in values[:5]) + (" ..." if len(values) > 5 else "")



def missing_reference_message(divergence: Divergence, weights: Tensor, remedy: str) -> str:
    """The one wording of "these weights need the reference policy", with the caller's way to add it."""
    sums = describe_weight_sums(weights.double().sum(dim=0))
    alternative = "" if divergence.needs_reference(1.0) else "; or use weights that sum to 1"
    return (f"divergence {divergence.name!r} with weights summing to {sums} needs a reference policy: "
            f"{remedy}{alternative}")


def weight_matrix(weights, num_policies: int, num_prompts: int) -> Tensor:
    """[M, B] float64: one weight vector for all B prompts, or a list of B vectors (one per prompt)."""
    if isinstance(weights, Tensor):
        w = weights.double()
    else:
        try:
            w = torch.as_tensor(weights, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            w = None
        if w is None or _has_bool(weights):
            raise ConfigError(f"weights must be {num_policies} numbers or one such list per prompt, got {weights!r}",
                              param="weights")
    if w.dim() == 2:
        if w.shape[0] != num_prompts:
            raise ConfigError(f"got {w.shape[0]} weight vectors for {num_prompts} prompts; give one vector "
                              "for all prompts or exactly one per prompt", param="weights")
        return torch.stack([as_weight_tensor(row, num_policies) for row in w], dim=1)
    return as_weight_tensor(w, num_policies).unsqueeze(1).expand(num_policies, num_prompts).clone()


@dataclass(frozen=True)
class Weighting:
    """Validated weights for a batch of prompts under one divergence.

    matrix: [M, B] float64, one column per prompt. `uses_reference`: the reference policy must run.
    """

    matrix: Tensor
    divergence: Divergence
    uses_reference: bool

    @classmethod
    def build(cls, weights, *, num_policies: int, num_prompts: int, divergence: Divergence,
              has_reference: bool, remedy: str) -> "Weighting":
        """Validate `weights`; MissingReferenceError (with `remedy`: how to add one) if the reference is
        needed and there is none."""
        matrix = weight_matrix(weights, num_policies, num_prompts)
        uses_reference = reference_needed(divergence, matrix)
        if uses_reference and not has_reference:
            raise MissingReferenceError(missing_reference_message(divergence, matrix, remedy), param="weights")
        return cls(matrix, divergence, uses_reference)
