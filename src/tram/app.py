"""`create_app(settings, config)`: the gateway as one ASGI app, with no module-level state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from tram.api.admin import reload_config
from tram.api.middleware import AuthMiddleware, RequestIdMiddleware, record_of
from tram.api.model import ModelEndpoint
from tram.api.state import AppState
from tram.api.table import ENDPOINTS, MODEL_ROUTES, PAGE_ASSETS, dialect_of, key_prefixes, takes_x_api_key
from tram.api.uploads import UploadBudget
from tram.auth.principal import Authenticator
from tram.batches.execute import LineExecutor
from tram.batches.runner import BatchRunner
from tram.batches.service import BatchService
from tram.batches.throttle import GatewayLoad
from tram.config import ConfigError, Settings, TramConfig
from tram.errors import (
    InternalError,
    MethodNotAllowed,
    NotFound,
    TramError,
    error_response,
    unexpected_failure,
)
from tram.files import private_dir
from tram.limits import build_limiter
from tram.metrics import Metrics
from tram.relay.admission import Admission
from tram.relay.forward import Forwarder
from tram.relay.media import MediaVetting
from tram.relay.queueing import Queues
from tram.relay.sealing import Sealer
from tram.relay.service import ModelService
from tram.routing.discovery import discover_forever
from tram.routing.engine_load import scrape_forever
from tram.routing.prober import probe_forever
from tram.routing.registry import Registry
from tram.server import ConnectionGuard
from tram.server.heap import settle
from tram.store.batch_lines import LineQueue
from tram.store.batches import BatchStore
from tram.store.db import Database, database_url
from tram.store.files import FileStore
from tram.store.keys import KeyStore, revision_file_of
from tram.store.stored_responses import ResponseStore
from tram.store.usage import UsageWriter
from tram.transport.upstream import UpstreamClient
from tram.types import ASGIApp, Receive, Scope, Send
from tram.vision.fetch import ImageFetcher
from tram.web import web_pages

__all__ = ["TramApp", "build_state", "create_app"]

logger = logging.getLogger("tram.app")


def _batch_parts(config: TramConfig, database: Database, registry: Registry,
                 upstream: UpstreamClient, models: ModelService, admission: Admission,
                 usage: UsageWriter, metrics: Metrics, authenticator: Authenticator,
                 files: UploadBudget) -> tuple[BatchService, BatchRunner, GatewayLoad]:
    """The Batch API's service, this process's batch runner and the load it paces by."""
    routes = {route.name: route for route in MODEL_ROUTES}
    executor = LineExecutor(models, routes, admission, usage, metrics,
                            authenticator.principal_of, config.batches.retry_seconds)
    running: dict[str, int] = {}  # lines in flight by model: the runner's, the signal reads
    # Engines' queues read a few times per adjustment, at most once a second.
    load = GatewayLoad(registry, upstream, running,
                       interval=min(1.0, 4 * config.batches.adjust_interval))
    runner = BatchRunner(LineQueue(database), BatchStore(database), executor, load,
                         config.batches, running=running)
    service = BatchService(FileStore(database), BatchStore(database), config.batches,
                           config.server.max_body_bytes, runner.wake, files.hold)
    return service, runner, load


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
    media = MediaVetting(config.vision, fetcher)
    responses = ResponseStore(database, config.responses)
    models = ModelService(registry, Forwarder(upstream, metrics), media, responses,
                          config.responses, {route.name: route for route in MODEL_ROUTES},
                          Sealer(settings.master_key or secrets.token_hex(32)),
                          Queues(registry, config.sharing, metrics), config.sharing.priorities)
    authenticator = Authenticator(settings.master_key, keys)
    usage = UsageWriter(database, settings.data_dir / "journal")
    limiter = build_limiter(config.limits, settings.redis_url, keys.tokens_used)
    admission = Admission(limiter, registry)
    # Batch files in memory at once (an upload, or a file being checked into a batch): two
    # of the largest allowed, whose parse holds a copy or two more.
    file_uploads = UploadBudget(2 * config.batches.max_file_bytes)
    batches, runner, load = _batch_parts(config, database, registry, upstream, models,
                                         admission, usage, metrics, authenticator,
                                         file_uploads)
    state = AppState(
        settings=settings,
        config=config,
        registry=registry,
        upstream=upstream,
        fetcher=fetcher,
        media=media,
        models=models,
        responses=responses,
        authenticator=authenticator,
        metrics=metrics,
        database=database,
        keys=keys,
        usage=usage,
        limiter=limiter,
        # Upload bodies in memory at once: four of the largest allowed (api/uploads.py).
        uploads=UploadBudget(4 * config.server.max_upload_bytes),
        file_uploads=file_uploads,
        admission=admission,
        files=FileStore(database),
        batches=batches,
        batch_runner=runner,
        batch_load=load,
    )
    state.models.check_config(config.models)
    return state


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
    # Starlette sends this answer, then re-raises: the traceback goes to the log.
    record_of(request.scope).error_code = "internal_error"
    return unexpected_failure()


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

    def __init__(self, app: ASGIApp, state: AppState, *, settles_heap: bool = False) -> None:
        self._app = app
        self.state = state
        self.settles_heap = settles_heap  # at the end of its start-up (server/heap.py)
        # Handed to the server by `tram.server.gateway_config`: its bounds and their metrics.
        self.connection_guard = ConnectionGuard(state.config.server, state.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


async def _dispatched_before(request: Request) -> Response:
    raise InternalError("The model routes are served by their endpoints before the router.")


def _lifespan(state: AppState, settle_heap: bool) -> Any:
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
                if state.config.usage.retention_days is not None:
                    background.start_soon(state.usage.prune_forever, state.config.usage)
                if state.config.batches.run:
                    background.start_soon(state.batch_runner.run)
                    background.start_soon(state.batch_load.run)
                _reload_on_sighup(state)
                if settle_heap:
                    settle()  # started: what start-up built lives as long as the process
                try:
                    yield
                finally:
                    # Lines in flight finish (or are handed back) before anything closes.
                    await state.batch_runner.stop()
                    background.cancel_scope.cancel()
        finally:
            # Outside the cancelled task group, so the closing awaits are not cancelled too.
            await state.aclose()

    return lifespan


def _router(state: AppState, settle_heap: bool) -> Starlette:
    """The routes served by plain handlers (and the app's lifespan)."""
    app = Starlette(
        routes=[*(Route(e.path, e.handler, methods=[e.method]) for e in ENDPOINTS),
                # Model routes are dispatched before the router; here so that another method
                # on their paths is a 405, not a 404.
                *(Route(path, _dispatched_before, methods=["POST"]) for route in MODEL_ROUTES
                  for path in route.paths),
                Mount(PAGE_ASSETS, app=web_pages())],
        exception_handlers={
            TramError: _tram_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=_lifespan(state, settle_heap),
    )
    # No `/path/` → `/path` redirect: Starlette builds its Location from the client's Host
    # header, which lets anyone make the gateway point a browser elsewhere.
    app.router.redirect_slashes = False
    app.state.tram = state
    return app


def create_app(settings: Settings, config: TramConfig, *, registry: Registry | None = None,
               settle_heap: bool = False) -> TramApp:
    """The gateway's app. `settle_heap`: the process is the gateway's own (`tram serve`, its
    workers, `tram up`): once started, its garbage collector is settled (server/heap.py)."""
    state = build_state(settings, config, registry)
    app = _router(state, settle_heap)
    endpoints = {path: ModelEndpoint(state, route) for route in MODEL_ROUTES
                 for path in route.paths}

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        # The model routes go straight to their ASGI endpoints (chat, on every request's path,
        # among them); the rest (and lifespan) to the Starlette app.
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await app(scope, receive, send)

    authenticated = AuthMiddleware(dispatch, state.authenticator, prefixes=key_prefixes(),
                                   metrics=state.metrics, dialect_of=dialect_of,
                                   x_api_key=takes_x_api_key)
    return TramApp(RequestIdMiddleware(authenticated, metrics=state.metrics, usage=state.usage,
                                       dialect_of=dialect_of), state, settles_heap=settle_heap)
