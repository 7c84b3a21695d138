"""`create_app(settings, config)`: the gateway as one ASGI app, with no module-level state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from tram.api.admin import metrics, reload, reload_config
from tram.api.chat import ChatEndpoint, RouteEndpoint
from tram.api.health import health, ready
from tram.api.keys import create_key, list_keys, revoke_key, show_key, update_key, usage_view
from tram.api.middleware import AuthMiddleware, RequestIdMiddleware, record_of
from tram.api.models import get_model, list_models
from tram.api.openapi import openapi_route
from tram.api.pages import me, models_status
from tram.api.responses import delete_response, get_response
from tram.api.state import AppState
from tram.auth.keys import Authenticator
from tram.config import ConfigError, Settings, TramConfig
from tram.errors import InternalError, MethodNotAllowed, NotFound, TramError, error_response
from tram.files import private_dir
from tram.limits import build_limiter
from tram.metrics import Metrics
from tram.relay.chat import ChatService
from tram.relay.forward import Forwarder
from tram.relay.routes import ROUTES
from tram.relay.service import RouteService
from tram.routing.discovery import discover_forever
from tram.routing.engine_load import scrape_forever
from tram.routing.prober import probe_forever
from tram.routing.registry import Registry
from tram.routing.upstream import UpstreamClient
from tram.server import ConnectionGuard
from tram.store.db import Database, database_url
from tram.store.keys import KeyStore, revision_file_of
from tram.store.responses import ResponseStore
from tram.store.usage import UsageWriter
from tram.types import ASGIApp, Receive, Scope, Send
from tram.vision.fetch import ImageFetcher
from tram.web import web_index, web_pages

__all__ = ["TramApp", "build_state", "create_app"]

logger = logging.getLogger("tram.app")


def build_state(settings: Settings, config: TramConfig,
                registry: Registry | None = None) -> AppState:
    private_dir(settings.data_dir, tighten=True)  # the store, journals, keys: this user's only
    metrics = Metrics()
    registry = registry if registry is not None else Registry.from_models(config.models)
    registry.bind_metrics(metrics)
    upstream = UpstreamClient()
    fetcher = ImageFetcher(config.vision)
    database = Database(database_url(settings.database_url or config.database.url,
                                     settings.data_dir))
    keys = KeyStore(database, revision_file_of(database))
    chat = ChatService(registry, upstream, config.vision, fetcher, metrics)
    responses = ResponseStore(database, config.responses)
    return AppState(
        settings=settings,
        config=config,
        registry=registry,
        upstream=upstream,
        fetcher=fetcher,
        chat=chat,
        routes=RouteService(registry, Forwarder(upstream, metrics), chat, responses,
                            config.responses),
        responses=responses,
        authenticator=Authenticator(settings.master_key, keys),
        metrics=metrics,
        database=database,
        keys=keys,
        usage=UsageWriter(database, settings.data_dir / "journal"),
        limiter=build_limiter(config.limits, settings.redis_url, keys.tokens_used),
    )


async def _tram_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TramError)
    record_of(request.scope).error_code = exc.code
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: TramError
    if exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
    elif exc.status_code == 404:
        error = NotFound(f"No route {request.method} {request.url.path}; the API is under /v1.")
    else:
        error = InternalError(str(exc.detail))
    return error_response(error, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (Starlette re-raises it); the client gets no internals.
    record_of(request.scope).error_code = "internal_error"
    return error_response(InternalError("The gateway failed unexpectedly; see its log with "
                                        "this request's X-Request-ID."))


def _reload_on_sighup(state: AppState) -> None:
    """`kill -HUP` re-reads tram.yaml (single-process servers; with --workers, uvicorn's
    supervisor answers SIGHUP by replacing its workers one by one, which also reloads)."""

    def handle() -> None:
        try:
            models = reload_config(state)
        except ConfigError as exc:
            logger.error("SIGHUP reload refused, config unchanged: %s", exc)
            return
        logger.info("SIGHUP: config reloaded; models: %s", ", ".join(models))

    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, handle)


class TramApp:
    """The gateway's ASGI app: request id, access log and last-resort errors, then auth, then
    the routes. `state` is the app's AppState (tests and the supervisor reach it here)."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self._app = app
        self.state = state
        # Found by the HTTP server's protocol (server/connection.py): its bounds and their metrics.
        self.connection_guard = ConnectionGuard(state.config.server, state.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


async def _not_here(request: Request) -> Response:
    raise InternalError("The model routes are served by their endpoints before the router.")


def create_app(settings: Settings, config: TramConfig, *,
               registry: Registry | None = None) -> TramApp:
    state = build_state(settings, config, registry)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await state.database.migrate()
            # The usage writer is not in the task group: cancelling it halfway through a write
            # could leave its transaction open; `state.aclose` stops it between writes.
            state.usage.start()
            async with anyio.create_task_group() as background:
                background.start_soon(probe_forever, state.registry, state.upstream)
                background.start_soon(discover_forever, state.registry)  # idle without dns
                background.start_soon(scrape_forever, state.registry, state.upstream)
                background.start_soon(state.limiter.run)
                if config.usage.retention_days is not None:
                    background.start_soon(state.usage.prune_forever, config.usage)
                _reload_on_sighup(state)
                try:
                    yield
                finally:
                    background.cancel_scope.cancel()
        finally:
            # Outside the cancelled task group, so the closing awaits are not cancelled too.
            await state.aclose()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/v1/chat/completions", _not_here, methods=["POST"]),
            *[Route(path, _not_here, methods=["POST"]) for r in ROUTES for path in r.paths],
            Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
            Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
            Route("/v1/me", me, methods=["GET"]),
            Route("/admin/models", models_status, methods=["GET"]),
            Route("/admin/reload", reload, methods=["POST"]),
            Route("/admin/usage", usage_view, methods=["GET"]),
            Route("/admin/keys", create_key, methods=["POST"]),
            Route("/admin/keys", list_keys, methods=["GET"]),
            Route("/admin/keys/{key_id}", show_key, methods=["GET"]),
            Route("/admin/keys/{key_id}", update_key, methods=["PATCH"]),
            Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi_route, methods=["GET"]),
            # The web pages: the page at /, its assets under /ui/ (never a catch-all that
            # would turn an API route's 405 into a 404).
            Route("/", web_index, methods=["GET", "HEAD"]),
            Mount("/ui", app=web_pages()),
        ],
        exception_handlers={
            TramError: _tram_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    # No `/path/` → `/path` redirect: Starlette builds its Location from the client's Host
    # header, which lets anyone make the gateway point a browser elsewhere.
    app.router.redirect_slashes = False
    app.state.tram = state
    chat = ChatEndpoint(state)
    relayed = {path: RouteEndpoint(state, route) for route in ROUTES for path in route.paths}

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        # The model routes go straight to their ASGI endpoints (chat, on every request's path,
        # first); the rest (and lifespan) to the Starlette app.
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == "/v1/chat/completions":
                await chat(scope, receive, send)
                return
            endpoint = relayed.get(path)
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await app(scope, receive, send)

    authenticated = AuthMiddleware(dispatch, state.authenticator,
                                   prefixes=("/v1", "/admin", "/metrics", "/tokenize",
                                             "/detokenize", "/rerank", "/score"),
                                   metrics=state.metrics)
    return TramApp(RequestIdMiddleware(authenticated, metrics=state.metrics, usage=state.usage),
                   state)
