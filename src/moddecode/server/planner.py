"""Turn a validated request body into decodable work, or a 4xx naming what to fix.

Everything that can be checked before decoding is checked here, on the event loop and before the
request is queued, so one bad request never fails a batch it would have shared: the number of
prompts against the queue, the model id (a policy name means that policy alone, so `weights` beside
it are an error), the weights (count, finiteness, whether the divergence then needs a reference), the
divergence name, decoding options, max_tokens against the server limit, and prompt + max_tokens
against the context.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch

from ..combine import as_weight_tensor
from ..config import PolicySetMeta
from ..decoding import DecodingConfig
from ..divergences import get_divergence
from ..errors import ConfigError, ModDecodeError
from ..mod import MOD
from ..policy import Policy
from .batcher import DecodeSettings
from .errors import ApiError, from_library
from .schemas import ChatCompletionRequest, GenerationRequest

DEFAULT_MAX_TOKENS = 256
DECODING_FIELDS = {f.name for f in dataclasses.fields(DecodingConfig)}


@dataclass
class Plan:
    """What to decode for one request: one row per prompt, all with the same weights and settings."""

    model: str
    prompts: list[str]
    weights: tuple[float, ...]
    max_tokens: list[int]
    prompt_tokens: list[int]
    settings: DecodeSettings


class PromptMeter:
    """Counts prompt tokens as each policy formats them, with private tokenizer copies.

    The decode thread uses the policies' own tokenizers; HF fast tokenizers are not safe to share
    across threads, so the event loop measures prompts with copies.
    """

    def __init__(self, members: list[Policy]):
        copies: dict[int, object] = {}
        self._policies = []
        for p in members:
            if id(p.base) not in copies:
                copies[id(p.base)] = dataclasses.replace(p.base, tokenizer=copy.deepcopy(p.base.tokenizer))
            self._policies.append(Policy(copies[id(p.base)], adapter_name=p.adapter_name,
                                         system_prompt=p.system_prompt, name=p.name))
        windows = [getattr(p.base.model.config, "max_position_embeddings", None) for p in members]
        self.context_window: int | None = min((w for w in windows if isinstance(w, int)), default=None)

    def longest(self, prompt: str) -> int:
        """Tokens of the longest formatting of `prompt` over all members."""
        return max(len(p.encode(prompt)) for p in self._policies)


class RequestPlanner:
    """Validates requests against one policy set and server limits."""

    def __init__(self, mod: MOD, meta: PolicySetMeta, *, max_tokens_limit: int, max_prompts: int | None = None):
        self.mod = mod
        self.meta = meta
        self.max_tokens_limit = max_tokens_limit
        self.max_prompts = max_prompts  # the queue's size: a request with more prompts could never be queued
        self.names = mod.names
        self.meter = PromptMeter([*mod.policies, *([mod.reference] if mod.reference is not None else [])])

    def chat_prompt(self, req: ChatCompletionRequest) -> str:
        """The single user message. Policies bring their own system prompts and templates, so a client's
        system message or earlier turns would be silently dropped; they are rejected instead."""
        roles = [m.role for m in req.messages]
        if roles != ["user"]:
            extra = next((i for i, r in enumerate(roles) if r != "user"), len(roles) - 1)
            raise ApiError(400, "messages must be exactly one user message: each policy applies its own system "
                                f"prompt and chat template (got roles {roles}). Put any instructions into the "
                                "user message.", param=f"messages[{extra}].role", code="unsupported_messages")
        return req.messages[0].text

    def plan(self, req: GenerationRequest, prompts: list[str], prompt_param: str) -> Plan:
        if self.max_prompts is not None and len(prompts) > self.max_prompts:
            # A 400, not the queue's retryable 429: retrying can never succeed.
            raise ApiError(400, f"this request has {len(prompts)} prompts, more than this server ever queues "
                                f"({self.max_prompts}, server.max_queue); split it into requests of at most "
                                f"{self.max_prompts} prompts", param=prompt_param, code="too_many_prompts")
        model, default_weights = self._model(req.model, req.weights is not None)
        weights = self._weights(req.weights if req.weights is not None else default_weights)
        divergence = self._divergence(req.divergence)
        if self.mod.reference is None and divergence.needs_reference(sum(weights)):
            raise ApiError(400, f"divergence {divergence.name!r} with weights summing to {sum(weights):g} needs a "
                                "reference policy, and this policy set has none: use weights that sum to 1"
                                + (" or another divergence" if divergence.name == "jsd" else "")
                                + ", or add `reference:` to the policy set", param="weights", code="missing_reference")
        settings = self._settings(req, divergence.name)
        prompt_tokens = [self.meter.longest(p) for p in prompts]
        max_tokens = [self._max_tokens(req.requested_max_tokens, n, prompt_param) for n in prompt_tokens]
        return Plan(model, prompts, weights, max_tokens, prompt_tokens, settings)

    def _model(self, model: str | None, has_weights: bool) -> tuple[str, list[float]]:
        """A policy name means that policy alone (one-hot weights); the set id means the default weights."""
        if model in self.names:
            if has_weights:  # which one would win is a guess either way: ask the client to say
                raise ApiError(400, f"model {model!r} is one policy, decoded alone, so it takes no `weights`: "
                                    f"to combine policies send model {self.meta.name!r} with `weights`, or drop "
                                    "`weights`", param="weights", code="weights_with_single_policy")
            return model, [1.0 if n == model else 0.0 for n in self.names]
        if model is None or model == self.meta.name:
            return self.meta.name, self.meta.default_weights
        raise ApiError(404, f"model {model!r} does not exist; use {self.meta.name!r} (with `weights`) or one of "
                            f"the policies {self.names} (see GET /v1/models)", param="model", code="model_not_found")

    def _weights(self, weights) -> tuple[float, ...]:
        try:
            return tuple(as_weight_tensor(weights, len(self.names), dtype=torch.float64).tolist())
        except ConfigError as exc:
            raise ApiError(400, f"{exc} (policies, in order: {self.names})", param="weights",
                           code="invalid_weights") from None

    def _divergence(self, name: str | None):
        try:
            return get_divergence(name if name is not None else self.meta.divergence)
        except ModDecodeError as exc:
            raise from_library(exc, param="divergence") from None

    def _settings(self, req: GenerationRequest, divergence: str) -> DecodeSettings:
        d = self.meta.defaults
        # As in OpenAI's API: temperature=0 means deterministic; a temperature > 0, top_p or top_k asks
        # for sampling; with none of them the policy set's default strategy applies.
        asks_sampling = bool(req.temperature) or req.top_p is not None or req.top_k is not None
        strategy = req.strategy or ("greedy" if req.temperature == 0 else "sample" if asks_sampling
                                    else d.get("strategy", "greedy"))
        temperature = req.temperature if req.temperature else d.get("temperature", 1.0)
        if strategy == "sample" and req.temperature == 0:
            raise ApiError(400, "temperature must be > 0 with strategy 'sample' (or use strategy 'greedy')",
                           param="temperature", code="invalid_value")
        stop = req.stop if req.stop is not None else d.get("stop") or []
        settings = DecodeSettings(
            divergence=divergence, strategy=strategy, scope=req.scope or d.get("scope", "sequence"),
            temperature=float(temperature), top_k=req.top_k if req.top_k is not None else d.get("top_k"),
            top_p=req.top_p if req.top_p is not None else d.get("top_p"),
            num_beams=req.num_beams or d.get("num_beams", 4),
            stop=(stop,) if isinstance(stop, str) else tuple(stop), seed=req.seed, ignore_eos=bool(req.ignore_eos))
        try:  # the library's own checks, with its messages
            DecodingConfig(strategy=settings.strategy, temperature=settings.temperature, top_k=settings.top_k,
                           top_p=settings.top_p, seed=settings.seed, num_beams=settings.num_beams,
                           scope=settings.scope, stop=settings.stop, ignore_eos=settings.ignore_eos)
        except ModDecodeError as exc:  # its messages start with the option's name, e.g. "top_p must be ..."
            first_word = str(exc).split(" ", 1)[0]
            raise from_library(exc, param=first_word if first_word in DECODING_FIELDS else None) from None
        return settings

    def _max_tokens(self, requested: int | None, prompt_tokens: int, prompt_param: str) -> int:
        window = self.meter.context_window
        room = window - prompt_tokens if window is not None else None
        if requested is not None and requested > self.max_tokens_limit:
            raise ApiError(400, f"max_tokens is {requested}, above this server's limit of {self.max_tokens_limit}",
                           param="max_tokens", code="max_tokens_too_large")
        if room is not None and room < 1:
            raise ApiError(400, f"the prompt takes {prompt_tokens} tokens, filling the model's context window of "
                                f"{window} tokens; shorten it", param=prompt_param, code="context_length_exceeded")
        if requested is None:  # the default shrinks to fit; an explicit request does not
            default = min(int(self.meta.defaults.get("max_new_tokens", DEFAULT_MAX_TOKENS)), self.max_tokens_limit)
            return min(default, room) if room is not None else default
        if room is not None and requested > room:
            raise ApiError(400, f"prompt ({prompt_tokens} tokens) + max_tokens ({requested}) exceeds the model's "
                                f"context window of {window} tokens; ask for at most {room} tokens or shorten the "
                                "prompt", param="max_tokens", code="context_length_exceeded")
        return requested
