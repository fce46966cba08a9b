"""One request's exchange: queue its rows, then answer as JSON or as server-sent events.

The first event is awaited before answering, so an error found at the first step (e.g. infeasible
weights) is still a proper 4xx rather than an error inside a 200 stream. A client that hangs up,
streaming or not, has its rows cancelled: they leave the running batch at the next step.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ..errors import ModDecodeError
from . import responses, schemas
from .errors import ApiError, from_library
from .planner import Plan
from .scheduler import Event, Job, JobScheduler


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


def plan_jobs(plan: Plan, sink: asyncio.Queue) -> list[Job]:
    """`plan.choices` rows per prompt; choice index k = prompt index * n + choice (sampling: seed + k)."""
    weights = plan.weighting.matrix[:, 0]
    return [Job(p * plan.choices + c, prompt, weights, plan.config, limit, plan.weighting.uses_reference, sink,
                logprobs=plan.logprobs)
            for p, (prompt, limit) in enumerate(zip(plan.prompts, plan.max_tokens, strict=True))
            for c in range(plan.choices)]


async def respond(request: Request, scheduler: JobScheduler, plan: Plan, kind: str, req: schemas.GenerationRequest):
    """Queue the plan's rows and answer as JSON, or as server-sent events with `stream`."""
    sink: asyncio.Queue[Event] = asyncio.Queue()
    jobs = plan_jobs(plan, sink)
    scheduler.submit(jobs)
    try:
        # Wait for the first event before answering, so an error found at the first step (e.g.
        # infeasible weights) is still a proper 4xx rather than an error inside a 200 stream.
        first = await _unless_client_gone(request, sink.get())
        _raise_if_error(first)
        if req.stream:  # from here on, a hang-up ends the stream and its `finally` cancels the rows
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_sse(plan, kind, jobs, sink, first, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        results = await _unless_client_gone(request, _collect(jobs, sink, first))
    except ClientGone:
        _cancel(jobs)
        return Response(status_code=499)  # nobody reads it; the access log shows nginx's "client closed"
    except BaseException:
        _cancel(jobs)
        raise
    extra = {"weights": plan.weights, "divergence": plan.weighting.divergence.name}
    use = responses.usage(sum(plan.prompt_tokens) * plan.choices, sum(len(r.token_ids) for r in results))
    rid = responses.new_id("chatcmpl" if kind == "chat" else "cmpl")
    build = responses.chat_completion if kind == "chat" else responses.text_completion
    return build(rid, plan.model, results, use, extra, plan.logprobs is not None)


async def _unless_client_gone(request: Request, awaitable):
    """The result of `awaitable`, or ClientGone as soon as the client disconnects.

    Nothing else notices: without a response to write, a non-streaming handler would wait for rows that
    nobody reads (and other requests would wait behind them).
    """
    work = asyncio.ensure_future(awaitable)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()
    if work.done() and not work.cancelled():
        return work.result()
    raise ClientGone


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message is `http.disconnect` when the client hangs up.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _collect(jobs: list[Job], sink: asyncio.Queue, event: Event) -> list:
    results = [None] * len(jobs)
    while True:
        _raise_if_error(event)
        if event.result is not None:
            results[event.index] = event.result
            if all(r is not None for r in results):
                return results
        event = await sink.get()


async def _sse(plan: Plan, kind: str, jobs: list[Job], sink: asyncio.Queue, event: Event, include_usage: bool):
    """Server-sent events in OpenAI's chunk format; errors after the first event arrive as an `error` event."""
    rid = responses.new_id("chatcmpl" if kind == "chat" else "cmpl")
    with_logprobs = plan.logprobs is not None

    def chunk(index: int, text: str | None, finish: str | None, role: bool = False, logprobs=None) -> str:
        logprobs = logprobs if with_logprobs and logprobs else None
        if kind == "chat":
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            body = responses.chat_chunk(rid, plan.model, index, delta, finish, logprobs)
        else:
            body = responses.text_chunk(rid, plan.model, index, text or "", finish, logprobs)
        return f"data: {json.dumps(body)}\n\n"

    try:
        if kind == "chat":
            for i in range(len(jobs)):
                yield chunk(i, None, None, role=True)
        done, completion_tokens = 0, 0
        while True:
            if event.error is not None:
                yield f"data: {json.dumps(_as_api_error(event.error).body())}\n\n"
                break
            if event.text or (with_logprobs and event.logprobs):
                yield chunk(event.index, event.text, None, logprobs=event.logprobs)
            if event.result is not None:
                yield chunk(event.index, None, event.result.finish_reason)
                done, completion_tokens = done + 1, completion_tokens + len(event.result.token_ids)
                if done == len(jobs):
                    if include_usage:
                        use = responses.usage(sum(plan.prompt_tokens) * plan.choices, completion_tokens)
                        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
                        yield f"data: {json.dumps(responses.usage_chunk(rid, plan.model, obj, use))}\n\n"
                    break
            event = await sink.get()
        yield "data: [DONE]\n\n"
    finally:  # also runs when the client disconnects: stop decoding rows nobody reads
        _cancel(jobs)


def _cancel(jobs: list[Job]) -> None:
    for job in jobs:
        job.cancel()


def _raise_if_error(event: Event) -> None:
    if event.error is not None:
        raise _as_api_error(event.error)


def _as_api_error(error: Exception) -> ApiError:
    if isinstance(error, ModDecodeError):
        return from_library(error)
    return ApiError(500, f"internal error while decoding: {type(error).__name__}: {error}", code="internal_error")
