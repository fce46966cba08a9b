"""`MOD`: decode from several policies combined under a per-request preference weighting."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from .beam import beam_search
from .combine import as_weight_tensor, describe_weight_sums, weight_sum_needs_reference
from .decoding import DecodingConfig, Generation, Scorer, TextDelta, decode_incremental
from .divergences import get_divergence
from .engine import Engine
from .errors import ConfigError, MissingReferenceError
from .policy import Policy, check_shared_vocabulary


class MOD:
    """Multi-objective decoding over `policies` (one per objective), optionally with a reference policy.

    The reference is run only when the divergence and weights need it (reverse KL / alpha with
    weights off the simplex, JSD, user-defined f). Policies sharing a base model run batched.
    """

    def __init__(self, policies: Sequence[Policy], *, reference: Policy | None = None, divergence="reverse_kl"):
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
        self.divergence = get_divergence(divergence)
        self.vocab_size = check_shared_vocabulary(everyone)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.policies]

    def weight_matrix(self, weights, num_prompts: int) -> torch.Tensor:
        """[M, B] float64: one weight vector for all prompts, or one per prompt."""
        m = len(self.policies)
        w = torch.as_tensor(weights, dtype=torch.float64) if not isinstance(weights, torch.Tensor) else weights.double()
        if w.dim() == 2:
            if w.shape[0] != num_prompts:
                raise ConfigError(f"got {w.shape[0]} weight vectors for {num_prompts} prompts; give one vector "
                                  "for all prompts or exactly one per prompt")
            rows = [as_weight_tensor(row, m, dtype=torch.float64) for row in w]
            return torch.stack(rows, dim=1)
        return as_weight_tensor(w, m, dtype=torch.float64).unsqueeze(1).expand(m, num_prompts).clone()

    def _prepare(self, prompts, weights, config: DecodingConfig, limits: list[int] | None = None):
        single = isinstance(prompts, str)
        prompt_list = [prompts] if single else list(prompts)
        if not prompt_list or any(not isinstance(p, str) for p in prompt_list):
            raise ConfigError("prompts must be a string or a non-empty list of strings")
        if limits is not None and (len(limits) != len(prompt_list) or config.strategy == "beam"):
            raise ConfigError("a list of max_new_tokens needs one limit per prompt (and greedy or sample decoding)")
        try:
            w = self.weight_matrix(weights, len(prompt_list))
        except ConfigError:
            raise
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"weights must be {len(self.policies)} numbers or one such list per prompt, "
                              f"got {weights!r}") from None
        uses_reference = weight_sum_needs_reference(self.divergence, w)
        if uses_reference and self.reference is None:
            remedy = "" if self.divergence.needs_reference(1.0) else ", or use weights that sum to 1"
            raise MissingReferenceError(
                f"divergence {self.divergence.name!r} with weights summing to {describe_weight_sums(w.sum(0))} "
                "needs a reference policy: "
                f"pass MOD(..., reference=Policy.load(...)) (CLI: --reference SOURCE; policy set: `reference:`)"
                f"{remedy}"
            )
        members = [*self.policies, *([self.reference] if uses_reference else [])]
        engine = Engine(members, self.vocab_size)
        scorer = Scorer(self.divergence, w.to(engine.groups[0][0].device), len(self.policies), uses_reference,
                        config.scope)
        eos_ids = set() if config.ignore_eos else set().union(*(p.eos_token_ids() for p in members))
        return single, prompt_list, engine, scorer, eos_ids

    @staticmethod
    def _config(kw) -> tuple[DecodingConfig, list[int] | None]:
        """DecodingConfig from keyword arguments; max_new_tokens may be a list (one limit per prompt)."""
        stop = kw.pop("stop", None)
        if isinstance(stop, str):
            stop = (stop,)
        if stop is not None and (not isinstance(stop, (list, tuple)) or not all(isinstance(x, str) for x in stop)):
            raise ConfigError(f"stop must be a string or a list of strings, got {stop!r}")
        limits = kw.get("max_new_tokens")
        if isinstance(limits, (list, tuple)):
            if not limits:
                raise ConfigError("max_new_tokens as a list needs one limit per prompt, got an empty list")
            limits = list(limits)
            for n in limits:
                DecodingConfig(max_new_tokens=n)  # validates each
            kw["max_new_tokens"] = max(limits)
        else:
            limits = None
        try:
            return DecodingConfig(stop=tuple(stop or ()), **kw), limits
        except TypeError as exc:
            raise ConfigError(f"unknown decoding option: {exc}") from None

    def generate(self, prompts: str | Sequence[str], weights, *, strategy: str = "greedy",
                 max_new_tokens: int | Sequence[int] = 128, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, num_beams: int = 4,
                 scope: str = "sequence", stop: str | Sequence[str] | None = None,
                 ignore_eos: bool = False, return_diagnostics: bool = False):
        """Decode each prompt under its weighting.

        prompts: a string (returns one result) or a list (returns a list, one per prompt).
        weights: M numbers for all prompts, or a list of M-number vectors, one per prompt.
        Returns strings; with return_diagnostics=True, `Generation` objects carrying per-token
        diagnostics (greedy/sample) or the final f-score (beam).
        """
        config, limits = self._config(dict(strategy=strategy, max_new_tokens=max_new_tokens, temperature=temperature,
                                           top_k=top_k, top_p=top_p, seed=seed, num_beams=num_beams, scope=scope,
                                           stop=stop, ignore_eos=ignore_eos))
        single, prompt_list, engine, scorer, eos_ids = self._prepare(prompts, weights, config, limits)
        tokenizer = self.policies[0].tokenizer
        if config.strategy == "beam":
            results = beam_search(engine, scorer, prompt_list, config, tokenizer, eos_ids)
        else:
            results: list[Generation | None] = [None] * len(prompt_list)
            for _ in decode_incremental(engine, scorer, prompt_list, config, tokenizer, eos_ids, results,
                                        want_diagnostics=return_diagnostics, limits=limits):
                pass
        out = results if return_diagnostics else [r.text for r in results]
        return out[0] if single else out

    def stream(self, prompts: str | Sequence[str], weights, **kwargs) -> Iterator[TextDelta]:
        """Like `generate` (greedy or sample), yielding `TextDelta(index, text)` pieces as they decode.

        Each prompt's last delta carries its finished `Generation` in `.result` (text, token ids,
        finish_reason). `max_new_tokens` may be a list with one limit per prompt.
        """
        config, limits = self._config(dict(kwargs))
        if config.strategy == "beam":
            raise ConfigError("beam search cannot stream: the best beam is known only at the end; "
                              "use strategy='greedy' or 'sample', or call generate()")
        _, prompt_list, engine, scorer, eos_ids = self._prepare(prompts, weights, config, limits)
        results: list[Generation | None] = [None] * len(prompt_list)
        yield from decode_incremental(engine, scorer, prompt_list, config, self.policies[0].tokenizer, eos_ids,
                                      results, limits=limits)
