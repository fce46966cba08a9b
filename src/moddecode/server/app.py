"""The HTTP app: OpenAI-compatible completions with per-request MOD weights, plus the playground.

    POST /v1/chat/completions   a conversation; `weights`, `divergence`, ... in the body
    POST /v1/completions        a prompt or a list of prompts
    GET  /v1/models             the policy set (id, objectives, defaults) and each policy
    GET  /health                liveness and scheduling statistics (no API key needed)
    GET  /  or /playground      the playground page

Requests are validated by `RequestPlanner`, their rows join the running batch of the `Scheduler`
(continuous batching: every request decodes alongside the others from the next step on) and are
answered as JSON or as server-sent events ending with `data: [DONE]` (see `exchange.py`).

`model` is the policy-set id (with `weights`, or the set's default weights) or one policy's name,
which means that policy alone; `weights` beside a policy name are a 400.

Only Host names the server knows are answered (localhost, IP addresses, `allowed_hosts`): a 421
otherwise, against DNS rebinding. With `api_key`, every route but /health and the playground page
needs `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import PolicySetMeta
from ..divergences import KNOWN_NAMES
from ..errors import ModDecodeError
from ..mod import MOD
from . import schemas
from .config import ServerSettings
from .errors import ApiError, from_library, from_validation
from .exchange import respond
from .middleware import BodyLimit, TrustedHosts, bearer_auth
from .planner import RequestPlanner
from .scheduler import JobScheduler, QueueFullError, Scheduler

STATIC_FILES = {"playground.html": "text/html", "playground.js": "text/javascript", "playground.css": "text/css"}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def create_app(mod: MOD, meta: PolicySetMeta | None = None, settings: ServerSettings | None = None, *,
               api_key: str | None = None, **overrides) -> FastAPI:
    """An app serving `mod`. `meta` names the set and objectives (default: derived from `mod`);
    `settings` holds the limits (default: ServerSettings()), and keyword `overrides` replace some of
    them (e.g. max_tokens_limit=64). With `api_key`, requests need `Authorization: Bearer <key>`.

    The app's state holds `scheduler` (with its statistics), `planner`, `mod`, `meta` and `settings`.
    """
    settings = dataclasses.replace(settings or ServerSettings(), **overrides)  # validates
    meta = meta or PolicySetMeta.from_mod(mod)
    planner = RequestPlanner(mod, meta, max_tokens_limit=settings.max_tokens_limit, max_prompts=settings.max_queue)
    scheduler = make_scheduler(mod, max_batch=settings.max_batch_size, max_queue=settings.max_queue,
                          window_s=settings.batch_window_ms / 1000)

    @asynccontextmanager
    async def lifespan(_app):
        scheduler.start()
        yield
        await scheduler.stop()

    # No /docs: Swagger UI loads from a CDN, and this server must work offline.
    app = FastAPI(title="moddecode", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.mod, app.state.meta, app.state.planner, app.state.scheduler = mod, meta, planner, scheduler
    app.state.settings = settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(TrustedHosts, allowed=settings.allowed_hosts)  # added last: runs first
    _install_error_handlers(app)
    auth = [Depends(bearer_auth(api_key))]
    created = int(time.time())
    static = {name: resources.files(__package__).joinpath(name).read_text() for name in STATIC_FILES}
    cards = lambda: _model_cards(planner, meta, created, settings.max_tokens_limit)  # noqa: E731

    @app.get("/health")
    async def health():
        return {"status": "ok", "scheduler": scheduler.stats()}

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
        return {"object": "list", "data": cards()}

    @app.get("/v1/models/{model_id}", dependencies=auth)
    async def get_model(model_id: str):
        for card in cards():
            if card["id"] == model_id:
                return card
        raise ApiError(404, f"model {model_id!r} does not exist", param="model", code="model_not_found")

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(req: schemas.ChatCompletionRequest, request: Request):
        plan = planner.plan(req, [planner.chat_conversation(req)], prompt_param="messages")
        return await respond(request, scheduler, plan, "chat", req)

    @app.post("/v1/completions", dependencies=auth)
    async def completions(req: schemas.CompletionRequest, request: Request):
        plan = planner.plan(req, req.prompts, prompt_param="prompt")
        return await respond(request, scheduler, plan, "text", req)

    return app


def make_scheduler(mod: MOD, *, max_batch: int = 32, max_queue: int = 256, window_s: float = 0.0) -> JobScheduler:
    """The scheduler for `mod`'s engine: vLLM's async engine for 'vllm', else the `DecodeLoop`."""
    if mod.engine.name == "vllm":
        from .vllm_scheduler import VllmScheduler

        return VllmScheduler(mod, max_batch=max_batch, max_queue=max_queue, window_s=window_s)
    return Scheduler(mod, max_batch=max_batch, max_queue=max_queue, window_s=window_s)


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
