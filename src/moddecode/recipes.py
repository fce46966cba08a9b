"""Named recipes (paper D.3): known methods that are MOD with particular policies and weights.

Each returns a `Recipe`: a configured MOD engine plus the weight vector that makes it that method,
so they run on the same batched engine as everything else (no separate code paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .errors import ConfigError
from .mod import MOD
from .policy import Policy


@dataclass(frozen=True)
class Recipe:
    """A MOD engine and the weights that turn it into a named method."""

    name: str
    mod: MOD
    weights: tuple[float, ...]

    def generate(self, prompts, **kwargs):
        return self.mod.generate(prompts, list(self.weights), **kwargs)

    def stream(self, prompts, **kwargs):
        return self.mod.stream(prompts, list(self.weights), **kwargs)


def proxy_tuning(large: Policy, small_tuned: Policy, small_base: Policy) -> Recipe:
    """Proxy-tuning (Liu et al., 2024a): log p_large + log p_small_tuned - log p_small_base.

    Reverse KL with weights (1, 1, -1): they sum to 1, so no reference is needed. Swapping the two
    small models gives jail-breaking / delta-unlearning.
    """
    return Recipe("proxy_tuning", MOD([large, small_tuned, small_base]), (1.0, 1.0, -1.0))


def multi_objective_proxy_tuning(large: Policy, small_base: Policy, small_tuned: Sequence[Policy],
                                 weights: Sequence[float]) -> Recipe:
    """Steer a large model with small models tuned per objective (paper D.3):
    log p_large - log p_small_base + sum_i w_i log p_small_tuned_i.
    """
    small_tuned = list(small_tuned)
    if len(weights) != len(small_tuned):
        raise ConfigError(f"got {len(weights)} weights for {len(small_tuned)} tuned small models")
    if abs(sum(weights) - 1) > 1e-6:
        raise ConfigError(f"multi-objective proxy-tuning weights must sum to 1 (got {sum(weights):g}): "
                          "the base model's log-probs are subtracted once")
    return Recipe("multi_objective_proxy_tuning", MOD([large, small_base, *small_tuned]),
                  (1.0, -1.0, *map(float, weights)))


def dera(aligned: Policy, reference: Policy, strength: float) -> Recipe:
    """DeRa realignment (Liu et al., 2024b): l_ref + strength * (l_aligned - l_ref).

    strength = beta / beta'; 0 gives the reference, 1 the aligned model, > 1 stronger alignment.
    """
    if strength < 0:
        raise ConfigError(f"DeRa strength (beta/beta') must be >= 0, got {strength}")
    return Recipe("dera", MOD([aligned, reference]), (float(strength), 1.0 - float(strength)))

