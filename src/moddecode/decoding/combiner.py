"""`Combiner`: member log-probs -> MOD scores for each live row (the one place decoding calls combine)."""

from __future__ import annotations

import torch

from ..combine import combine_logprobs
from ..divergences import Divergence
from ..weights import Weighting
from .outputs import TokenDiagnostics

Tensor = torch.Tensor


class Combiner:
    """Turns member log-probs into combined MOD scores for each live sequence."""

    def __init__(self, divergence: Divergence, weights: Tensor, scope: str, uses_reference: bool):
        self.divergence = divergence
        self.weights = weights  # [M, N] float64, one column per live sequence
        self.num_policies = weights.shape[0]
        self.uses_reference = uses_reference
        self.scope = scope

    @classmethod
    def for_weighting(cls, weighting: Weighting, scope: str, device: torch.device) -> "Combiner":
        return cls(weighting.divergence, weighting.matrix.to(device), scope, weighting.uses_reference)

    def scores(self, logprobs: Tensor, cumulative: Tensor) -> Tensor:
        """logprobs [members, N, V] next-token; cumulative [members, N] prefix log-probs -> [N, V]."""
        lp = logprobs.double()
        if self.scope == "sequence":
            lp = cumulative.unsqueeze(-1) + lp
        m = self.num_policies
        ref = lp[m] if self.uses_reference else None
        return combine_logprobs(lp[:m], self.weights, self.divergence, ref_logprobs=ref)

    def select(self, index: Tensor) -> None:
        self.weights = self.weights[:, index.to(self.weights.device)]

    def diagnostics(self, logprobs: Tensor, cumulative: Tensor, tokens: Tensor, scores: Tensor,
                    tokenizer) -> list[TokenDiagnostics]:
        """logprobs [members, N, V] next-token, cumulative [members, N] prefix log-probs, tokens [N]."""
        n = torch.arange(tokens.shape[0])
        chosen = logprobs[:, n, tokens].double()  # [members, N]
        level = cumulative + chosen if self.scope == "sequence" else chosen  # what `scores` were computed on
        m = self.num_policies
        ref = level[m] if self.uses_reference else None
        contrib = self.divergence.contributions(level[:m], self.weights, ref)
        return [
            TokenDiagnostics(int(tokens[j]), tokenizer.decode([int(tokens[j])]), float(scores[j, tokens[j]]),
                             chosen[:m, j].tolist(), contrib[:, j].tolist())
            for j in range(tokens.shape[0])
        ]
