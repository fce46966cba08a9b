"""`MOD`: decode from several policies combined under a per-request preference weighting."""

from __future__ import annotations

from typing import Iterator, Sequence

from .decoding import STRATEGIES, DecodingConfig, Generation, TextDelta, get_strategy
from .divergences import Divergence, get_divergence
from .engines import Engine, get_engine_class
from .errors import ConfigError
from .policy import Policy, check_shared_vocabulary
from .weights import Weighting

REFERENCE_REMEDY = ("pass MOD(..., reference=Policy.load(...)) (CLI: --reference SOURCE; policy set: "
                    "`reference:`)")


class MOD:
    """Multi-objective decoding over `policies` (one per objective), optionally with a reference policy.

    `divergence` is the default for calls that do not name one (each call may). The reference is run
    only when the divergence and weights need it (reverse KL / alpha with weights off the simplex, JSD,
    a user-defined f). `engine` names what runs the models ('transformers': in this process, policies
    sharing a base batched into one forward per step); `engine_options` are passed to it.
    """

    def __init__(self, policies: Sequence[Policy], *, reference: Policy | None = None, divergence="reverse_kl",
                 engine: str = "transformers", engine_options: dict | None = None):
        policies = list(policies) if not isinstance(policies, Policy) else [policies]
        if not policies:
            raise ConfigError("MOD needs at least one policy")
        everyone = [*policies, *([reference] if reference is not None else [])]
        for p in everyone:
            if not isinstance(p, Policy):
                raise ConfigError(f"policies and reference must be moddecode.Policy objects, got {type(p).__name__}; "
                                  "load them with Policy.load(...)")
        self.policies = policies
        self.reference = reference
        self.defaults = DecodingConfig(divergence=divergence)
        self.engine: Engine = get_engine_class(engine)(policies, reference, check_shared_vocabulary(everyone),
                                                       **(engine_options or {}))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.policies]

    @property
    def vocab_size(self) -> int:
        """Tokens every policy shares (lm_head rows beyond it are padding)."""
        return self.engine.vocab_size

    @property
    def divergence(self) -> Divergence:
        """The default divergence (a call's `divergence` overrides it)."""
        return get_divergence(self.defaults.divergence)

    def generate(self, prompts: str | Sequence[str], weights, config: DecodingConfig | None = None, *,
                 return_diagnostics: bool = False, logprobs: int | None = None, **overrides):
        """Decode each prompt under its weighting.

        prompts: a string (returns one result) or a list (returns a list, one per prompt) of strings or
                 conversations ([{"role": "system"|"user"|"assistant", "content": ...}, ...] ending with
                 a user turn; each policy's own system prompt comes first).
        weights: M numbers for all prompts, or a list of M-number vectors, one per prompt.
        config:  a DecodingConfig (default: this MOD's defaults); keyword overrides (any DecodingConfig
                 field, e.g. strategy='sample', max_new_tokens=64, divergence='jsd') apply on top.
                 max_new_tokens may be a list with one limit per prompt (strategies that allow it).
        logprobs: k >= 0 records each token's log-prob under the combined distribution and the k most
                 likely tokens (`Generation.logprobs`; greedy/sample).
        Returns strings; with return_diagnostics=True, `Generation` objects carrying per-token
        diagnostics (greedy/sample) or the final f-score (beam).
        """
        results = self._results(prompts, self._decode(prompts, weights, config, overrides,
                                                      diagnostics=return_diagnostics, logprobs=logprobs))
        out = results if return_diagnostics else [r.text for r in results]
        return out[0] if isinstance(prompts, str) else out

    def generations(self, prompts: Sequence, weights, config: DecodingConfig | None = None, *,
                    logprobs: int | None = None, **overrides) -> list[Generation]:
        """Like `generate`, returning each prompt's `Generation` (text, token ids, finish_reason, beam score)
        without per-token diagnostics, so it works on every engine."""
        return self._results(prompts, self._decode(prompts, weights, config, overrides, logprobs=logprobs))

    @staticmethod
    def _results(prompts, deltas: Iterator[TextDelta]) -> list[Generation]:
        results: list[Generation | None] = [None] * (1 if isinstance(prompts, str) else len(prompts or []))
        for delta in deltas:
            if delta.result is not None:
                results[delta.index] = delta.result
        return results

    def stream(self, prompts: str | Sequence[str], weights, config: DecodingConfig | None = None, *,
               logprobs: int | None = None, **overrides) -> Iterator[TextDelta]:
        """Like `generate`, yielding `TextDelta(index, text)` pieces as they decode (strategies that stream).

        Each prompt's last delta carries its finished `Generation` in `.result` (text, token ids,
        finish_reason).
        """
        config, limits = self._config(config, overrides)
        strategy = get_strategy(config.strategy)
        if not strategy.streams:
            streaming = [s.name for s in STRATEGIES.values() if s.streams]
            raise ConfigError(f"{strategy.label} cannot stream: {strategy.no_stream_reason}; use strategy "
                              f"{' or '.join(map(repr, streaming))}, or call generate()", param="stream")
        return self._decode(prompts, weights, config, {}, limits=limits, logprobs=logprobs)

    def _decode(self, prompts, weights, config, overrides, *, diagnostics: bool = False,
                logprobs: int | None = None, limits: list[int] | None = None) -> Iterator[TextDelta]:
        if limits is None:
            config, limits = self._config(config, overrides)
        prompt_list = [prompts] if isinstance(prompts, str) else list(prompts) if prompts is not None else []
        if not prompt_list or not all(isinstance(p, str) or _is_conversation(p) for p in prompt_list):
            raise ConfigError("prompts must be a string or a non-empty list of strings or conversations "
                              "([{'role': 'user', 'content': ...}, ...], ending with a user turn)", param="prompts")
        if limits and len(limits) != len(prompt_list):
            raise ConfigError(f"got {len(limits)} max_new_tokens limits for {len(prompt_list)} prompts; give one per "
                              "prompt", param="max_new_tokens")
        weighting = Weighting.build(weights, num_policies=len(self.policies), num_prompts=len(prompt_list),
                                    divergence=get_divergence(config.divergence),
                                    has_reference=self.reference is not None, remedy=REFERENCE_REMEDY)
        if logprobs is not None and (not isinstance(logprobs, int) or isinstance(logprobs, bool) or logprobs < 0):
            raise ConfigError(f"logprobs must be an integer >= 0 (how many likely tokens to list), got {logprobs!r}",
                              param="logprobs")
        return self.engine.decode(prompt_list, weighting, config, limits=limits or [config.max_new_tokens] * len(
            prompt_list), diagnostics=diagnostics, logprobs=logprobs)

    def _config(self, config: DecodingConfig | None, overrides: dict) -> tuple[DecodingConfig, list[int] | None]:
        """The call's config (this MOD's defaults, then `config`, then overrides) and per-prompt limits."""
        if config is not None and not isinstance(config, DecodingConfig):
            raise ConfigError(f"config must be a moddecode.DecodingConfig, got {type(config).__name__}", param="config")
        limits = overrides.get("max_new_tokens")
        if isinstance(limits, (list, tuple)):
            if not limits:
                raise ConfigError("max_new_tokens as a list needs one limit per prompt, got an empty list",
                                  param="max_new_tokens")
            limits = [DecodingConfig(max_new_tokens=n).max_new_tokens for n in limits]  # validates each
            overrides = {**overrides, "max_new_tokens": max(limits)}
        else:
            limits = None
        base = self.defaults if config is None else config
        if base.divergence is None:
            base = base.merged(divergence=self.defaults.divergence)
        config = base.merged(**overrides)
        strategy = get_strategy(config.strategy)
        if limits is not None and not strategy.per_row_limits:
            raise ConfigError(f"{strategy.label} takes one max_new_tokens for all prompts, not a list",
                              param="max_new_tokens")
        return config, limits


def _is_conversation(item) -> bool:
    """A chat as `Policy.encode` takes it: role/content string pairs, ending with a user turn."""
    return (isinstance(item, list) and bool(item) and all(
        isinstance(m, dict) and set(m) == {"role", "content"} and m["role"] in ("system", "user", "assistant")
        and isinstance(m["content"], str) for m in item) and item[-1]["role"] == "user")
