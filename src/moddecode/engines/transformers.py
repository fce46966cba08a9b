"""The embedded default engine: transformers models in this process, one batched forward per base per step."""

from __future__ import annotations

from typing import Iterator

import torch

from ..decoding import DecodeRun, DecodingConfig, TextDelta, get_strategy
from ..decoding.combiner import Combiner
from ..weights import Weighting
from .base import Engine
from .cpu_linear import small_batch_enabled
from .rows import ModelRows


class TransformersEngine(Engine):
    """Decodes with the shared strategies over `ModelRows` (policies sharing a base run as one batch)."""

    name = "transformers"

    def __init__(self, policies, reference, vocab_size, **options):
        if options:
            from ..errors import ConfigError

            raise ConfigError(f"the transformers engine takes no engine_options, got {sorted(options)}",
                              param="engine_options")
        super().__init__(policies, reference, vocab_size)
        self.small_batch = small_batch_enabled()

    @property
    def device(self) -> torch.device:
        return self.policies[0].base.device

    def decode(self, prompts: list[str], weighting: Weighting, config: DecodingConfig, *,
               limits: list[int], diagnostics: bool = False) -> Iterator[TextDelta]:
        members = [*self.policies, *([self.reference] if weighting.uses_reference else [])]
        rows = ModelRows(members, self.vocab_size, self.small_batch)
        eos_ids = set() if config.ignore_eos else set().union(*(p.eos_token_ids() for p in members))
        run = DecodeRun(rows=rows, combiner=Combiner(weighting, config.scope, rows.device), prompts=prompts,
                        config=config, tokenizer=self.policies[0].tokenizer, eos_ids=eos_ids, limits=limits,
                        diagnostics=diagnostics)
        return get_strategy(config.strategy).run(run)
