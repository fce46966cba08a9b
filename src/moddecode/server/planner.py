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


from ..config import PolicySetMeta
from ..decoding import DecodingConfig, get_strategy
from ..divergences import get_divergence
from ..errors import MissingReferenceError, ModDecodeError
from ..mod import MOD
from ..policy import Conversation, Policy
from ..weights import Weighting
from .errors import ApiError, from_library
from .schemas import ChatCompletionRequest, GenerationRequest

DEFAULT_MAX_TOKENS = 256
REFERENCE_REMEDY = "this policy set has none: add `reference:` to it"


@dataclass
class Plan:
    """What to decode for one request: `choices` rows per prompt, all with the same weights and config."""

    model: str
    prompts: list[str | Conversation]
    weighting: Weighting  # one column (the request's weights)
    config: DecodingConfig  # the divergence resolved
    max_tokens: list[int]  # per prompt
    prompt_tokens: list[int]
    choices: int = 1
    logprobs: int | None = None  # None: none; k: each token's log-prob and k alternatives

    @property
    def weights(self) -> list[float]:
        return self.weighting.matrix[:, 0].tolist()


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

    def longest(self, prompt: str | Conversation) -> int:
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

    def chat_conversation(self, req: ChatCompletionRequest) -> Conversation:
        """The conversation to answer: system (or developer) messages first, then user and assistant turns
        in any order, ending with a user turn. Each policy puts its own system prompt first."""
        roles = [m.role for m in req.messages]
        for i, role in enumerate(roles):
            if role == "tool":
                raise ApiError(400, "tool messages are not supported: this server does not call tools",
                               param=f"messages[{i}].role", code="unsupported_messages")
            if role in ("system", "developer") and any(r in ("user", "assistant") for r in roles[:i]):
                raise ApiError(400, f"a {role} message must come before the conversation's user and assistant turns "
                                    f"(got roles {roles}); move it to the front", param=f"messages[{i}].role",
                               code="unsupported_messages")
        if roles[-1] != "user":
            raise ApiError(400, f"the last message must be the user's, which the policies answer (got roles {roles})",
                           param=f"messages[{len(roles) - 1}].role", code="unsupported_messages")
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in req.messages]

    def plan(self, req: GenerationRequest, prompts: list[str | Conversation], prompt_param: str) -> Plan:
        rows = len(prompts) * req.choices
        if self.max_prompts is not None and rows > self.max_prompts:
            # A 400, not the queue's retryable 429: retrying can never succeed.
            raise ApiError(400, f"this request asks for {rows} completions ({len(prompts)} prompts x n={req.choices}), "
                                f"more than this server ever queues ({self.max_prompts}, server.max_queue); split it "
                                f"into requests of at most {self.max_prompts}", param=prompt_param,
                           code="too_many_prompts")
        model, default_weights = self._model(req.model, req.weights is not None)
        try:
            config = req.to_decoding_config(self.meta.decoding)
        except ModDecodeError as exc:
            raise from_library(exc, param=_wire_name(getattr(exc, "param", None))) from None
        weighting = self._weighting(req.weights if req.weights is not None else default_weights, config)
        if req.top_logprobs_wanted is not None and get_strategy(config.strategy).choose is None:
            raise ApiError(400, f"logprobs are not available with {get_strategy(config.strategy).label}: its tokens "
                                "are chosen by whole-sequence scores; use greedy or sampling",
                           param="logprobs", code="invalid_value")
        if req.choices > 1 and req.stream and get_strategy(config.strategy).choose is None:
            raise ApiError(400, "n > 1 cannot stream with beam search", param="n", code="invalid_value")
        prompt_tokens = [self.meter.longest(p) for p in prompts]
        requested = req.requested_max_tokens
        max_tokens = [self._max_tokens(requested, n, prompt_param) for n in prompt_tokens]
        return Plan(model, prompts, weighting, config, max_tokens, prompt_tokens, req.choices, req.top_logprobs_wanted)

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

    def _weighting(self, weights, config: DecodingConfig) -> Weighting:
        try:
            return Weighting.build([weights], num_policies=len(self.names), num_prompts=1,
                                   divergence=get_divergence(config.divergence),
                                   has_reference=self.mod.reference is not None, remedy=REFERENCE_REMEDY)
        except ModDecodeError as exc:
            code = "missing_reference" if isinstance(exc, MissingReferenceError) else "invalid_weights"
            raise ApiError(400, f"{exc} (policies, in order: {self.names})", param="weights", code=code) from None

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


def _wire_name(field: str | None) -> str | None:
    """A DecodingConfig field as the request names it."""
    return {"max_new_tokens": "max_tokens"}.get(field, field)
