"""The embedded default engine: transformers models in this process, one batched forward per base per step."""

from __future__ import annotations

from typing import Iterator

import torch

from ..decoding import DecodeLoop, DecodeRun, DecodingConfig, RowSpec, TextDelta, get_strategy
from ..decoding.combiner import Combiner
from ..errors import ConfigError
from ..weights import Weighting
from .base import Engine
from .cpu_linear import small_batch_enabled
from .rows import ModelRows


class TransformersEngine(Engine):
    """Decodes with the shared strategies over `ModelRows` (policies sharing a base run as one batch)."""

    name = "transformers"

    def __init__(self, policies, reference, vocab_size, **options):
        if options:
            raise ConfigError(f"the transformers engine takes no engine_options, got {sorted(options)}",
                              param="engine_options")
        super().__init__(policies, reference, vocab_size)
        self.small_batch = small_batch_enabled()

    @property
    def device(self) -> torch.device:
        return self.policies[0].base.device

    def rows(self) -> ModelRows:
        """Fresh rows over every member (the reference scores only the sequences that need it)."""
        members = [*self.policies, *([self.reference] if self.reference is not None else [])]
        return ModelRows(members, self.vocab_size, self.small_batch,
                         reference_index=len(self.policies) if self.reference is not None else None)

    def eos_ids(self, with_reference: bool) -> set[int]:
        members = [*self.policies, *([self.reference] if with_reference and self.reference is not None else [])]
        return set().union(*(p.eos_token_ids() for p in members))

    def loop(self, max_rows: int | None = None, share_prefixes: bool = True) -> DecodeLoop:
        """A decode loop over all members, for callers that keep submitting rows (a server); at most
        `max_rows` rows decode at once, the others wait for a free place."""
        return DecodeLoop(self.rows(), self.policies[0].tokenizer, self.eos_ids(False),
                          max_rows=max_rows, reference_eos_ids=self.eos_ids(True), share_prefixes=share_prefixes)

    def decode(self, prompts: list[str], weighting: Weighting, config: DecodingConfig, *,
               limits: list[int], diagnostics: bool = False, logprobs: int | None = None) -> Iterator[TextDelta]:
        strategy = get_strategy(config.strategy)
        if strategy.run is not None:  # a strategy with its own loop (beam search)
            if logprobs is not None:
                raise ConfigError(f"{strategy.label} does not report per-token log-probs (its tokens are chosen by "
                                  "whole-sequence scores); use greedy or sampling", param="logprobs")
            rows = self.rows()
            eos_ids = set() if config.ignore_eos else self.eos_ids(weighting.uses_reference)
            return strategy.run(DecodeRun(
                rows=rows, combiner=Combiner.for_weighting(weighting, config.scope, rows.device), prompts=prompts,
                config=config, tokenizer=self.policies[0].tokenizer, eos_ids=eos_ids, limits=limits,
                diagnostics=diagnostics))
        return self._decode_rows(prompts, weighting, config, limits, diagnostics, logprobs)

    def _decode_rows(self, prompts, weighting, config, limits, diagnostics, logprobs) -> Iterator[TextDelta]:
        loop = self.loop()
        sums = weighting.matrix.sum(dim=0).tolist()
        loop.submit([RowSpec(prompt, weighting.matrix[:, i], config, limits[i], index=i, key=i,
                             uses_reference=weighting.divergence.needs_reference(sums[i]), diagnostics=diagnostics,
                             logprobs=logprobs)
                     for i, prompt in enumerate(prompts)])
        while loop.busy:
            for event in loop.step():
                if event.error is not None:
                    raise event.error
                yield event.delta
