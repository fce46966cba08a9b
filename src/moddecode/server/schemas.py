"""Request bodies (OpenAI wire format plus MOD's fields) and the response/chunk shapes.

Unknown fields are rejected (`extra="forbid"`), so a typo never silently changes decoding. Standard
OpenAI fields that clients send by default are accepted when they ask for nothing we would ignore:
`n`=1, `presence_penalty`/`frequency_penalty`=0, empty `logit_bias`, no logprobs; `user`, `metadata`,
`store` and `service_tier` are bookkeeping and ignored. Anything else is a 400 that names the field.

Types are strict (`"max_tokens": "2"`, `"weights": ["0.5"]` or `true` as a weight are 400s, not
coerced), every string must be valid Unicode (no lone surrogates), and prompts must hold some text.

`model` is the policy-set id (decoded with `weights`, default: the set's default weights) or one
policy's name, which means that policy alone: `weights` beside a policy name are a 400.

MOD's own fields: `weights` (one real number per policy, in policy-set order), `divergence`
('reverse_kl', 'forward_kl', 'jsd', 'alpha:<a>'), `strategy` ('greedy', 'sample', 'beam'), `scope`
('sequence', 'token'), `top_k`, `num_beams` and `ignore_eos` (as in vLLM: always decode max_tokens).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
INT64 = 2**63  # seeds are signed 64-bit, as in OpenAI's API; torch takes seed + prompt index in that range


def _valid_unicode(text: str) -> str:
    # JSON allows "\ud800" alone, but such a string is not text: tokenizers and UTF-8 encoders fail on it.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid Unicode (a lone surrogate {text[exc.start]!r} at character "
                         f"{exc.start}); \\u escapes must come in surrogate pairs") from None
    return text


def _has_text(text: str) -> str:
    if not text.strip():
        raise ValueError("must contain some text, not only whitespace")
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
PromptText = Annotated[Text, AfterValidator(_has_text)]


class Body(BaseModel):
    """A request body or part of one: unknown fields are errors and types are strict (no "2" for 2)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(Body):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # newer clients send it; nothing to obfuscate here


class GenerationRequest(Body):
    """Fields shared by chat and text completions."""

    model: Text | None = None  # the policy-set id (uses `weights`) or a policy name (that policy alone, no weights)
    max_tokens: int | None = Field(None, ge=1)
    temperature: FiniteFloat | None = Field(None, ge=0)  # 0 means greedy
    top_p: FiniteFloat | None = Field(None, gt=0, le=1)
    stop: Text | list[Text] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    n: int | None = None
    presence_penalty: FiniteFloat | None = None
    frequency_penalty: FiniteFloat | None = None
    logit_bias: dict[Text, float] | None = None
    user: Text | None = None  # ignored
    metadata: dict[Text, Text] | None = None  # ignored
    store: bool | None = None  # ignored: nothing is stored
    service_tier: Text | None = None  # ignored
    # MOD
    weights: list[FiniteFloat] | None = None
    divergence: Text | None = None
    strategy: Literal["greedy", "sample", "beam"] | None = None
    scope: Literal["sequence", "token"] | None = None
    top_k: int | None = Field(None, ge=1)
    num_beams: int | None = Field(None, ge=1, le=64)
    ignore_eos: bool | None = None  # decode exactly max_tokens tokens (benchmarks), as in vLLM

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n):
        if n is not None and n != 1:
            raise ValueError("n must be 1 (one choice per prompt); send several requests or prompts instead")
        return n

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value, info):
        if value:
            raise ValueError(f"{info.field_name} is not supported (MOD combines policies, it does not "
                             "penalise tokens); omit it or send 0")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, value):
        if value:
            raise ValueError("logit_bias is not supported; omit it or send {}")
        return value

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


class TextPart(Body):
    type: Literal["text"]
    text: Text


class ChatMessage(Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = Field(None, validate_default=True)
    name: Text | None = None

    @field_validator("content")
    @classmethod
    def _some_text(cls, content):
        # The message is what the policies answer: an empty one is a client bug, not a prompt.
        parts = [content] if isinstance(content, str) else [p.text for p in content or []]
        _has_text("".join(parts))
        return content

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatCompletionRequest(GenerationRequest):
    """POST /v1/chat/completions. `messages` must be exactly one user message (see `prompt`)."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # newer name of max_tokens
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value, info):
        if value:
            raise ValueError(f"{info.field_name} is not supported by this server; omit it")
        return value

    @model_validator(mode="after")
    def _chat_checks(self):
        if self.max_tokens is not None and self.max_completion_tokens is not None \
                and self.max_tokens != self.max_completion_tokens:
            raise ValueError("max_tokens and max_completion_tokens disagree; send one of them")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens


class CompletionRequest(GenerationRequest):
    """POST /v1/completions. Each prompt is formatted by every policy's own chat template, like a user message."""

    prompt: PromptText | list[PromptText]
    echo: bool = False
    suffix: Text | None = None
    best_of: int | None = None
    logprobs: int | None = None

    @field_validator("echo", "suffix", "logprobs")
    @classmethod
    def _not_supported(cls, value, info):
        if value:
            raise ValueError(f"{info.field_name} is not supported by this server; omit it")
        return value

    @field_validator("best_of")
    @classmethod
    def _one_candidate(cls, value):
        if value is not None and value != 1:
            raise ValueError("best_of must be 1; for a search over sequences use strategy='beam'")
        return value

    @field_validator("prompt")
    @classmethod
    def _some_prompt(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("prompt must be a string or a non-empty list of strings")
        return value

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


# ----- responses (plain dicts: the OpenAI shapes, plus MOD's `weights`/`divergence` for transparency) -----

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(rid: str, model: str, texts: list[str], finish: list[str], use: dict,
                    extra: dict) -> dict[str, Any]:
    choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": f, "logprobs": None}
               for i, (t, f) in enumerate(zip(texts, finish, strict=True))]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use, **extra}


def chat_chunk(rid: str, model: str, index: int, delta: dict, finish: str | None) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}]}


def text_completion(rid: str, model: str, texts: list[str], finish: list[str], use: dict,
                    extra: dict) -> dict[str, Any]:
    choices = [{"index": i, "text": t, "finish_reason": f, "logprobs": None}
               for i, (t, f) in enumerate(zip(texts, finish, strict=True))]
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use, **extra}


def text_chunk(rid: str, model: str, index: int, text: str, finish: str | None) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": None}]}


def usage_chunk(rid: str, model: str, obj: str, use: dict) -> dict[str, Any]:
    """Final chunk when stream_options.include_usage is set: no choices, only usage."""
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [], "usage": use}
