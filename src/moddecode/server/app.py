"""The HTTP app: OpenAI-compatible completions with per-request MOD weights, plus the playground.

    POST /v1/chat/completions   one user message; `weights`, `divergence`, ... in the body
    POST /v1/completions        a prompt or a list of prompts (one choice each)
    GET  /v1/models             the policy set (id, objectives, defaults) and each policy
    GET  /health                liveness and batching statistics (no API key needed)
    GET  /  or /playground      the playground page

Requests are validated by `RequestPlanner`, queued in the `Batcher` (which decodes concurrent requests
together) and answered as JSON or as server-sent events ending with `data: [DONE]`. A client that
hangs up, streaming or not, has its rows dropped from the batch.

`model` is the policy-set id (with `weights`, or the set's default weights) or one policy's name,
which means that policy alone; `weights` beside a policy name are a 400.

Only Host names the server knows are answered (localhost, IP addresses, `allowed_hosts`): a 421
otherwise, against DNS rebinding. With `api_key`, every route but /health and the playground page
needs `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import PolicySetMeta
from ..divergences import KNOWN_NAMES
from ..errors import ModDecodeError
from ..mod import MOD
from . import schemas
from .batcher import Batcher, DivergenceVariants, Event, Job, QueueFullError
from .config import ServerSettings
from .errors import ApiError, from_library, from_validation
from .middleware import BodyLimit, TrustedHosts, bearer_auth
from .planner import Plan, RequestPlanner

STATIC_FILES = {"playground.html": "text/html", "playground.js": "text/javascript", "playground.css": "text/css"}
_DEFAULTS = ServerSettings()
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def create_app(mod: MOD, *, meta: PolicySetMeta | None = None, api_key: str | None = None,
               max_body_bytes: int = _DEFAULTS.max_body_bytes, max_queue: int = _DEFAULTS.max_queue,
               max_tokens_limit: int = _DEFAULTS.max_tokens_limit, max_batch_size: int = _DEFAULTS.max_batch_size,
               batch_window_ms: float = _DEFAULTS.batch_window_ms,
               allowed_hosts: list[str] | tuple[str, ...] = _DEFAULTS.allowed_hosts) -> FastAPI:
    """An app serving `mod`. `meta` names the set and objectives (default: derived from `mod`).

    `allowed_hosts`: Host names to answer besides localhost and IP addresses ("*.example.com", "*": any).
    The app's state holds `batcher` (with batch statistics), `planner`, `mod` and `meta`.
    """
    settings = ServerSettings(max_body_bytes=max_body_bytes, max_queue=max_queue, max_tokens_limit=max_tokens_limit,
                              max_batch_size=max_batch_size, batch_window_ms=batch_window_ms,
                              allowed_hosts=allowed_hosts)  # validates
    meta = meta or PolicySetMeta.from_mod(mod)
    planner = RequestPlanner(mod, meta, max_tokens_limit=max_tokens_limit, max_prompts=max_queue)
    batcher = Batcher(DivergenceVariants(mod), max_batch=max_batch_size, max_queue=max_queue,
                      window_s=batch_window_ms / 1000)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    # No /docs: Swagger UI loads from a CDN, and this server must work offline.
    app = FastAPI(title="moddecode", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.mod, app.state.meta, app.state.planner, app.state.batcher = mod, meta, planner, batcher
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(TrustedHosts, allowed=settings.allowed_hosts)  # added last: runs first
    _install_error_handlers(app)
    auth = [Depends(bearer_auth(api_key))]
    created = int(time.time())
    static = {name: resources.files(__package__).joinpath(name).read_text() for name in STATIC_FILES}

    @app.get("/health")
    async def health():
        return {"status": "ok", "batcher": batcher.stats()}

    @app.get("/", include_in_schema=False)
    @app.get("/playground", include_in_schema=False)
    async def playground():
        return HTMLResponse(static["playground.html"])

    @app.get("/playground/{name}", include_in_schema=False)
    async def playground_file(name: str):
        if name not in STATIC_FILES:
            raise ApiError(404, f"no such file: {name}", code="not_found")
        return Response(static[name], media_type=STATIC_FILES[name])

    @app.get("/v1/models", dependencies=auth)
    async def list_models():
        return {"object": "list", "data": _model_cards(planner, meta, created, max_tokens_limit)}

    @app.get("/v1/models/{model_id}", dependencies=auth)
    async def get_model(model_id: str):
        for card in _model_cards(planner, meta, created, max_tokens_limit):
            if card["id"] == model_id:
                return card
        raise ApiError(404, f"model {model_id!r} does not exist", param="model", code="model_not_found")

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(req: schemas.ChatCompletionRequest, request: Request):
        plan = planner.plan(req, [planner.chat_prompt(req)], prompt_param="messages")
        return await _respond(request, batcher, plan, "chat", req)

    @app.post("/v1/completions", dependencies=auth)
    async def completions(req: schemas.CompletionRequest, request: Request):
        plan = planner.plan(req, req.prompts, prompt_param="prompt")
        return await _respond(request, batcher, plan, "text", req)

    return app


def _model_cards(planner: RequestPlanner, meta: PolicySetMeta, created: int, max_tokens_limit: int) -> list[dict]:
    """The policy set as one model (weights chosen per request), and each policy as a one-hot model."""
    names = planner.names
    default_weights = meta.default_weights
    base = {"object": "model", "created": created, "owned_by": "moddecode"}
    policy_set = {
        **base, "id": meta.name,
        "policies": [{"name": n, "objective": o} for n, o in zip(names, meta.objectives, strict=True)],
        "default_weights": default_weights, "divergence": meta.divergence, "divergences": KNOWN_NAMES,
        "has_reference": planner.mod.reference is not None,
        "defaults": {k: v for k, v in meta.defaults.items() if k != "weights"},
        "limits": {"max_tokens": max_tokens_limit, "context_window": planner.meter.context_window},
    }
    return [policy_set, *({**base, "id": n, "objective": o, "parent": meta.name}
                          for n, o in zip(names, meta.objectives, strict=True))]


# ----- decoding a planned request -----

class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _respond(request: Request, batcher: Batcher, plan: Plan, kind: str, req: schemas.GenerationRequest):
    sink: asyncio.Queue[Event] = asyncio.Queue()
    jobs = [Job(i, prompt, plan.weights, n, plan.settings, sink)
            for i, (prompt, n) in enumerate(zip(plan.prompts, plan.max_tokens, strict=True))]
    batcher.submit(jobs)
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
    extra = {"weights": list(plan.weights), "divergence": plan.settings.divergence}
    texts, finish = [r.text for r in results], [r.finish_reason for r in results]
    use = schemas.usage(sum(plan.prompt_tokens), sum(len(r.token_ids) for r in results))
    rid = schemas.new_id("chatcmpl" if kind == "chat" else "cmpl")
    build = schemas.chat_completion if kind == "chat" else schemas.text_completion
    return build(rid, plan.model, texts, finish, use, extra)


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
    rid = schemas.new_id("chatcmpl" if kind == "chat" else "cmpl")

    def chunk(index: int, text: str | None, finish: str | None, role: bool = False) -> str:
        if kind == "chat":
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            body = schemas.chat_chunk(rid, plan.model, index, delta, finish)
        else:
            body = schemas.text_chunk(rid, plan.model, index, text or "", finish)
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
            if event.text:
                yield chunk(event.index, event.text, None)
            if event.result is not None:
                yield chunk(event.index, None, event.result.finish_reason)
                done, completion_tokens = done + 1, completion_tokens + len(event.result.token_ids)
                if done == len(jobs):
                    if include_usage:
                        use = schemas.usage(sum(plan.prompt_tokens), completion_tokens)
                        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
                        yield f"data: {json.dumps(schemas.usage_chunk(rid, plan.model, obj, use))}\n\n"
                    break
            event = await sink.get()
        yield "data: [DONE]\n\n"
    finally:  # also runs when the client disconnects: stop decoding rows nobody reads
        _cancel(jobs)


def _cancel(jobs: list[Job]) -> None:
    for job in jobs:
        if not job.finished:
            job.cancelled = True


def _raise_if_error(event: Event) -> None:
    if event.error is not None:
        raise _as_api_error(event.error)


def _as_api_error(error: Exception) -> ApiError:
    if isinstance(error, ModDecodeError):
        return from_library(error)
    return ApiError(500, f"internal error while decoding: {type(error).__name__}: {error}", code="internal_error")


# ----- error shapes -----

def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, lambda _r, exc: exc.response())
    app.add_exception_handler(RequestValidationError, lambda _r, exc: from_validation(exc).response())
    app.add_exception_handler(ModDecodeError, lambda _r, exc: from_library(exc).response())
    app.add_exception_handler(QueueFullError, lambda _r, exc: ApiError(429, str(exc), code="queue_full")
                              .response(headers={"Retry-After": "1"}))
    app.add_exception_handler(StarletteHTTPException, lambda _r, exc: ApiError(
        exc.status_code, str(exc.detail), code=HTTP_CODES.get(exc.status_code))
        .response(headers=getattr(exc, "headers", None)))
    app.add_exception_handler(Exception, lambda _r, exc: ApiError(
        500, f"internal server error: {type(exc).__name__}", code="internal_error").response())
