"""Response bodies and stream chunks in OpenAI's shapes (plain dicts), plus MOD's `weights`/`divergence`.

Log-probs are those of the combined MOD distribution (log_softmax of the combined scores, before
temperature, top-k or top-p), in the chat shape (`content: [{token, logprob, bytes, top_logprobs}]`)
or the legacy completions shape (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..decoding import Generation, TokenLogprob


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _head(rid: str, obj: str, model: str) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model}


def chat_logprobs(entries: list[TokenLogprob] | None) -> dict | None:
    if entries is None:
        return None

    def one(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {"content": [{**one(e.token, e.logprob), "top_logprobs": [one(t, lp) for _, t, lp in e.top]}
                        for e in entries]}


def text_logprobs(entries: list[TokenLogprob] | None, offset: int = 0) -> dict | None:
    if entries is None:
        return None
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e.token)
    return {"tokens": [e.token for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{t: lp for _, t, lp in e.top} for e in entries], "text_offset": offsets}


def chat_completion(rid: str, model: str, results: list[Generation], use: dict, extra: dict,
                    with_logprobs: bool) -> dict[str, Any]:
    choices = [{"index": i, "message": {"role": "assistant", "content": r.text}, "finish_reason": r.finish_reason,
                "logprobs": chat_logprobs(r.logprobs if with_logprobs else None)} for i, r in enumerate(results)]
    return {**_head(rid, "chat.completion", model), "choices": choices, "usage": use, **extra}


def chat_chunk(rid: str, model: str, index: int, delta: dict, finish: str | None,
               logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
    return {**_head(rid, "chat.completion.chunk", model),
            "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": chat_logprobs(logprobs)}]}


def text_completion(rid: str, model: str, results: list[Generation], use: dict, extra: dict,
                    with_logprobs: bool) -> dict[str, Any]:
    choices = [{"index": i, "text": r.text, "finish_reason": r.finish_reason,
                "logprobs": text_logprobs(r.logprobs if with_logprobs else None)} for i, r in enumerate(results)]
    return {**_head(rid, "text_completion", model), "choices": choices, "usage": use, **extra}


def text_chunk(rid: str, model: str, index: int, text: str, finish: str | None,
               logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
    return {**_head(rid, "text_completion", model),
            "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": text_logprobs(logprobs)}]}


def usage_chunk(rid: str, model: str, obj: str, use: dict) -> dict[str, Any]:
    """Final chunk when stream_options.include_usage is set: no choices, only usage."""
    return {**_head(rid, obj, model), "choices": [], "usage": use}
