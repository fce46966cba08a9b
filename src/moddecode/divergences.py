"""The f-divergences MOD combines policies under, with closed forms and a generic path.

For a strong-barrier f, Eq. (5)/(6) of the paper scores a token (or sequence) y as

    score(y) = l_ref(y) + log (grad f)^-1( sum_i w_i grad f(pi_i(y) / pi_ref(y)) )

with l = log pi. Each divergence below implements that score in closed form, working in log space so
that nothing under- or overflows, and also exposes grad f and its inverse so the closed form can be
checked against the generic path (and so users can bring their own f).

Shapes everywhere: `l` is [M, ..., V], `w` is [M, ..., 1] (already broadcastable to `l`), `l_ref`
is [..., V] or None, `wsum` is [..., 1] with sums near 1 already snapped to exactly 1
(`snap_weight_sums`). All are float64. Returned scores are [..., V] with NaN where a token lies
outside the domain of (grad f)^-1; `combine_logprobs` turns those into -inf.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import ConfigError, UnknownNameError

Tensor = torch.Tensor
# |sum(w) - 1| below this counts as "on the simplex": the reference term then vanishes.
WEIGHT_SUM_TOL = 1e-6
# Below this alpha the score's 1/alpha factor turns float64 rounding into whole nats (and alpha -> 0 is
# reverse KL anyway).
MIN_ALPHA = 1e-6


def on_simplex(weight_sum: float) -> bool:
    """Whether weights summing to `weight_sum` count as summing to exactly 1 (rounding aside)."""
    return abs(weight_sum - 1) <= WEIGHT_SUM_TOL


def snap_weight_sums(wsum: Tensor) -> Tensor:
    """Weight sums with every sum within WEIGHT_SUM_TOL of 1 replaced by exactly 1.

    [0.6, 0.3, 0.1] sums to 1 - 1.1e-16 in float64: left as is, the (S - 1) terms of JSD and alpha
    would outweigh the e^-80 differences that decide tokens 80 nats above the reference.
    """
    return torch.where((wsum - 1).abs() <= WEIGHT_SUM_TOL, torch.ones_like(wsum), wsum)


def signed_logsumexp(log_abs: Tensor, sign: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    """log|sum_k s_k exp(a_k)| and the sign of that sum, along `dim`.

    Terms with sign 0 are ignored. The sign is +1, -1, or 0 (exact cancellation, or no terms).
    """
    neg_inf = torch.tensor(-math.inf, dtype=log_abs.dtype, device=log_abs.device)
    pos = torch.logsumexp(torch.where(sign > 0, log_abs, neg_inf), dim=dim)
    neg = torch.logsumexp(torch.where(sign < 0, log_abs, neg_inf), dim=dim)
    big = torch.maximum(pos, neg)
    small = torch.minimum(pos, neg)
    # log(e^big - e^small) = big + log1p(-e^(small - big)); guard big = -inf (no terms at all).
    diff = torch.where(torch.isfinite(big), small - big, torch.full_like(big, -math.inf))
    magnitude = big + torch.log1p(-torch.exp(diff))
    # no terms on either side: pos - neg is NaN, so the sign is 0
    out_sign = torch.sign(pos - neg).nan_to_num(0.0)
    return magnitude, out_sign


def _weighted(w: Tensor, terms: Tensor) -> Tensor:
    """w * terms with 0 * (+-inf) = 0: a policy with weight zero contributes nothing."""
    return torch.where(w == 0, torch.zeros_like(terms), w * terms)


def _log_abs_weights(w: Tensor) -> Tensor:
    """log|w|, with w = 0 mapped to -inf (never NaN)."""
    return torch.log(w.abs())


class Divergence:
    """A strong-barrier f: its gradient, the gradient's inverse, and (in subclasses) a closed form.

    `grad_f_inverse` must return NaN or a value <= 0 outside its domain; such tokens are infeasible.
    """

    def __init__(self, name: str, grad_f: Callable[[Tensor], Tensor], grad_f_inverse: Callable[[Tensor], Tensor]):
        self.name = name
        self.grad_f = grad_f
        self.grad_f_inverse = grad_f_inverse

    def __repr__(self) -> str:
        return f"<divergence {self.name}>"

    def needs_reference(self, weight_sum: float) -> bool:
        """Whether the score depends on pi_ref for weights summing to `weight_sum`."""
        return True

    def log_score(self, l: Tensor, w: Tensor, l_ref: Tensor | None, wsum: Tensor) -> Tensor:
        """Generic path: evaluate grad f and its inverse numerically."""
        if l_ref is None:
            raise ConfigError(f"divergence {self.name!r} needs ref_logprobs (pass the reference policy)")
        ratio = torch.exp(l - l_ref.unsqueeze(0))
        inner = _weighted(w, self.grad_f(ratio)).sum(dim=0)
        x = self.grad_f_inverse(inner)
        return l_ref + torch.log(torch.where(x > 0, x, torch.full_like(x, math.nan)))

    def contributions(self, l: Tensor, w: Tensor, l_ref: Tensor | None) -> Tensor:
        """Per-policy terms w_i grad f(pi_i / pi_ref) ([M, ...], float64); pi_ref = 1 where no reference ran.

        Their sum is the argument of (grad f)^-1: score = l_ref + log (grad f)^-1(sum_i contributions_i),
        with l_ref = 0 where no reference ran (the score does not depend on it then).
        """
        ref = torch.zeros_like(l[0]) if l_ref is None else l_ref
        return _weighted(w.double(), self.grad_f(torch.exp(l.double() - ref.double().unsqueeze(0))))


class ReverseKL(Divergence):
    """f(u) = u log u: score = l_ref + (S - 1) + sum_i w_i (l_i - l_ref); sum_i w_i l_i when S = 1."""

    def __init__(self) -> None:
        super().__init__("reverse_kl", lambda u: 1 + torch.log(u), lambda v: torch.exp(v - 1))

    def needs_reference(self, weight_sum: float) -> bool:
        return not on_simplex(weight_sum)

    def log_score(self, l, w, l_ref, wsum):
        score = _weighted(w, l).sum(dim=0)
        if l_ref is not None:
            score = score + _weighted(1 - wsum, l_ref) + (wsum - 1)
        return score


class ForwardKL(Divergence):
    """f(u) = -log u: score = -log sum_i w_i / pi_i, independent of pi_ref; needs sum_i w_i/pi_i > 0."""

    def __init__(self) -> None:
        super().__init__("forward_kl", lambda u: -1 / u, lambda v: -1 / v)

    def needs_reference(self, weight_sum: float) -> bool:
        return False

    def log_score(self, l, w, l_ref, wsum):
        magnitude, sign = signed_logsumexp(_log_abs_weights(w) - l, torch.sign(w).expand_as(l))
        return torch.where(sign > 0, -magnitude, torch.full_like(magnitude, math.nan))


class AlphaDivergence(Divergence):
    """grad f(u) = (1 - u^-a)/a, 0 < a < 1:
    score = l_ref - (1/a) log(1 - S + sum_i w_i (pi_ref/pi_i)^a); -(1/a) logsumexp(log w_i - a l_i) when S = 1.
    """

    def __init__(self, alpha: float) -> None:
        if not MIN_ALPHA <= alpha < 1:
            raise ConfigError(
                f"alpha-divergence needs {MIN_ALPHA:g} <= alpha < 1, got {alpha!r}; e.g. 'alpha:0.5'. "
                "Smaller alphas cannot be computed meaningfully (the score divides by alpha; alpha -> 0 is "
                "reverse_kl), and numbers that round to 1 in floating point are alpha = 1"
            )
        self.alpha = alpha
        super().__init__(
            f"alpha:{alpha!r}",  # exact: the name is parsed again (policy sets, servers)
            lambda u: (1 - u.pow(-alpha)) / alpha,
            # outside 1 - a v > 0 the power can still be real (even 1/a): mark it NaN, i.e. infeasible
            lambda v: torch.where(1 - alpha * v > 0, (1 - alpha * v).pow(-1 / alpha), torch.full_like(v, math.nan)),
        )

    def needs_reference(self, weight_sum: float) -> bool:
        return not on_simplex(weight_sum)

    def log_score(self, l, w, l_ref, wsum):
        a = self.alpha
        ref = torch.zeros_like(l[0]) if l_ref is None else l_ref
        log_abs = _log_abs_weights(w) + a * (ref.unsqueeze(0) - l)
        sign = torch.sign(w).expand_as(l)
        if l_ref is not None:  # the (1 - S) term; it is zero (dropped) on the simplex
            slack = (1 - wsum).expand_as(ref).unsqueeze(0)
            log_abs = torch.cat([log_abs, torch.log(slack.abs())], dim=0)
            sign = torch.cat([sign, torch.sign(slack)], dim=0)
        magnitude, total_sign = signed_logsumexp(log_abs, sign)
        score = ref - magnitude / a
        return torch.where(total_sign > 0, score, torch.full_like(score, math.nan))


class JensenShannon(Divergence):
    """grad f(u) = log(2u/(1+u)). With b = (S-1) log 2 - sum_i w_i softplus(l_ref - l_i):
    score = l_ref + b - log(1 - e^b), feasible where b < 0. Always needs pi_ref (exact, no RKL fallback).
    """

    def __init__(self) -> None:
        super().__init__(
            "jsd",
            lambda u: torch.log(2 * u / (1 + u)),
            lambda v: torch.exp(v) / (2 - torch.exp(v)),
        )

    def needs_reference(self, weight_sum: float) -> bool:
        return True

    def log_score(self, l, w, l_ref, wsum):
        if l_ref is None:
            raise ConfigError("divergence 'jsd' needs ref_logprobs (pass the reference policy)")
        b = (wsum - 1) * math.log(2) - _weighted(w, torch.nn.functional.softplus(l_ref.unsqueeze(0) - l)).sum(0)
        score = l_ref + b - torch.log(-torch.expm1(b))
        return torch.where(b < 0, score, torch.full_like(score, math.nan))


_FIXED: dict[str, Callable[[], Divergence]] = {
    "reverse_kl": ReverseKL,
    "forward_kl": ForwardKL,
    "jsd": JensenShannon,
}
KNOWN_NAMES = [*_FIXED, "alpha:<a>"]


def get_divergence(spec) -> Divergence:
    """Resolve a divergence: a registry name, 'alpha:<a>', a Divergence, or a (grad_f, grad_f_inverse) pair."""
    if isinstance(spec, Divergence):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2 and all(callable(c) for c in spec):
        return Divergence("custom", spec[0], spec[1])
    if not isinstance(spec, str):
        raise ConfigError(
            f"divergence must be a name ({', '.join(KNOWN_NAMES)}) or a (grad_f, grad_f_inverse) pair, "
            f"got {type(spec).__name__}"
        )
    head, sep, raw = spec.strip().replace("=", ":", 1).partition(":")
    key = head.strip().lower().replace("-", "_")  # only the name is normalised, never the number
    if not sep and key in _FIXED:
        return _FIXED[key]()
    if sep and key == "alpha":
        raw = raw.strip()
        try:
            alpha = float(raw)
        except ValueError:
            raise ConfigError(f"bad alpha in divergence {spec!r}: {raw!r} is not a number; e.g. 'alpha:0.5'") from None
        return AlphaDivergence(alpha)
    raise UnknownNameError("divergence", spec, KNOWN_NAMES)
