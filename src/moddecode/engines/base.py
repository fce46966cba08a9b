"""The seam between `MOD` and an engine that runs the models.

`MOD` validates input once (prompts, a `Weighting`, a `DecodingConfig`) and hands it to an `Engine`,
which decodes and yields `TextDelta`s. The transformers engine does so by running `RowForward` rows
through the shared strategies (`moddecode.decoding`); an engine with its own scheduler (vLLM) can
decode natively instead, as long as it yields the same deltas.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

import torch

from ..decoding import DecodingConfig, TextDelta
from ..policy import Policy
from ..weights import Weighting


class Engine(ABC):
    """Runs M policies (and optionally a reference) for MOD.

    policies: the objectives' policies, in weight order; reference: pi_ref or None.
    """

    name: str

    def __init__(self, policies: list[Policy], reference: Policy | None, vocab_size: int):
        self.policies = policies
        self.reference = reference
        self.vocab_size = vocab_size

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where scores are computed (weights are moved here)."""

    @abstractmethod
    def decode(self, prompts: list[str], weighting: Weighting, config: DecodingConfig, *,
               limits: list[int], diagnostics: bool = False, logprobs: int | None = None) -> Iterator[TextDelta]:
        """Decode prompt i under weighting column i; yield text deltas, each prompt's last one carrying
        its Generation. `config.divergence` is already resolved (weighting.divergence); `limits` gives
        each prompt its max_new_tokens; `logprobs` = k asks for each token's log-prob and k alternatives."""
