"""Request bodies (OpenAI wire format plus MOD's fields) and the response/chunk shapes.

Unknown fields are rejected (`extra="forbid"`), so a typo never silently changes decoding. Standard
OpenAI fields are honoured (`n`, `logprobs`/`top_logprobs`: of the combined MOD distribution) or, when
they ask for nothing we would ignore, accepted: `presence_penalty`/`frequency_penalty`=0, empty
`logit_bias`; `user`, `metadata`, `store` and `service_tier` are bookkeeping and ignored. Anything else
is a 400 that names the field.

Types are strict (`"max_tokens": "2"`, `"weights": ["0.5"]` or `true` as a weight are 400s, not
coerced), every string must be valid Unicode (no lone surrogates), and prompts must hold some text.

`model` is the policy-set id (decoded with `weights`, default: the set's default weights) or one
policy's name, which means that policy alone: `weights` beside a policy name are a 400.

MOD's own fields: `weights` (one real number per policy, in policy-set order), `divergence`
('reverse_kl', 'forward_kl', 'jsd', 'alpha:<a>'), `strategy` ('greedy', 'sample', 'beam'), `scope`
('sequence', 'token'), `top_k`, `num_beams` and `ignore_eos` (as in vLLM: always decode max_tokens).
Every decoding option is a `DecodingConfig` field; `to_decoding_config` is the one conversion.

Chat `messages`: system (or developer) messages first, then user and assistant turns in any order,
ending with a user turn. A policy with its own system prompt keeps it first: the request's system text
follows it in the same system message (separated by a blank line).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..decoding import DecodingConfig
from ..errors import ConfigError

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
INT64 = 2**63  # seeds are signed 64-bit, as in OpenAI's API; torch takes seed + prompt index in that range
MAX_CHOICES = 16  # `n`: choices per prompt
MAX_TOP_LOGPROBS = 20


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
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)  # choices per prompt; choice k samples with seed + k
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
    strategy: Text | None = None  # a decoding strategy's name (checked by DecodingConfig)
    scope: Text | None = None
    top_k: int | None = Field(None, ge=1)
    num_beams: int | None = Field(None, ge=1, le=64)
    ignore_eos: bool | None = None  # decode exactly max_tokens tokens (benchmarks), as in vLLM

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

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def top_logprobs_wanted(self) -> int | None:
        """None: no log-probs; k: each token's log-prob and the k most likely tokens."""
        return None

    def decoding_overrides(self) -> dict[str, Any]:
        """The DecodingConfig fields this request sets, as sent (OpenAI names mapped to ours)."""
        given = {"strategy": self.strategy, "max_new_tokens": self.requested_max_tokens,
                 "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed,
                 "num_beams": self.num_beams, "scope": self.scope, "stop": self.stop,
                 "ignore_eos": self.ignore_eos, "divergence": self.divergence}
        return {k: v for k, v in given.items() if v is not None}

    def to_decoding_config(self, defaults: DecodingConfig) -> DecodingConfig:
        """This request's decoding options over the policy set's `defaults` (ConfigError naming the field).

        As in OpenAI's API, temperature 0 means deterministic (greedy), and a temperature > 0, top_p or
        top_k asks for sampling; with none of them the defaults' strategy applies."""
        given = self.decoding_overrides()
        asks_sampling = bool(self.temperature) or self.top_p is not None or self.top_k is not None
        if "strategy" not in given:
            given["strategy"] = "greedy" if self.temperature == 0 else "sample" if asks_sampling else None
        elif given["strategy"] == "sample" and self.temperature == 0:
            raise ConfigError("temperature must be > 0 with strategy 'sample' (or use strategy 'greedy')",
                              param="temperature")
        if self.temperature == 0:
            given.pop("temperature")  # 0 selects greedy; the temperature itself stays the default
        return defaults.merged(**given)


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
    """POST /v1/chat/completions: a conversation (see the module docstring for the order of roles)."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # newer name of max_tokens
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    @model_validator(mode="after")
    def _chat_checks(self):
        if self.max_tokens is not None and self.max_completion_tokens is not None \
                and self.max_tokens != self.max_completion_tokens:
            raise ValueError("max_tokens and max_completion_tokens disagree; send one of them")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def top_logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens


class CompletionRequest(GenerationRequest):
    """POST /v1/completions. Each prompt is formatted by every policy's own chat template, like a user message."""

    prompt: PromptText | list[PromptText]
    echo: bool = False
    suffix: Text | None = None
    best_of: int | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)  # the legacy field: how many alternatives

    @property
    def top_logprobs_wanted(self) -> int | None:
        return self.logprobs

    @field_validator("echo", "suffix")
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
