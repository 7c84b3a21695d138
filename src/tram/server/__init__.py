"""The HTTP/1.1 server of the gateway: uvicorn runs the sockets, workers, lifespan and graceful
shutdown; each connection is Trạm's own protocol (connection.py), which bounds every client
(guard.py) and runs each request's ASGI cycle (cycle.py). Why a protocol of our own rather than
uvicorn's with a subclass, or another server: docs/decisions.md ("Bounding clients in the
server", "An HTTP/1.1 protocol of our own").

A server is made by one factory, `gateway_config`, which hands the connections their bounds (a
ConnectionGuard): never looked for through wrappers, never a default nobody chose."""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.importer import import_from_string

from tram.config import ServerConfig
from tram.server.connection import HttpConnection
from tram.server.guard import ConnectionGuard

__all__ = ["ConnectionGuard", "GatewayConfig", "HttpConnection", "gateway_config",
           "protocol_options"]


class GatewayConfig(uvicorn.Config):
    """uvicorn's Config, plus the guard every connection of this server applies (read by
    HttpConnection as `config.guard`).

    The guard is the one given, else the served app's own `connection_guard` (a TramApp's),
    read when uvicorn loads the app: with `--workers N` the app is an import string of a
    factory, and each worker's guard is that of the app (and metrics) the worker builds. An
    app without one is refused at start-up, so a server never runs on limits nobody chose."""

    def __init__(self, app: Any, guard: ConnectionGuard | None = None, **options: Any) -> None:
        super().__init__(app, **options)
        self.guard = guard

    def load(self) -> None:
        if isinstance(self.app, str) and self.factory:
            # This worker's app, built here so that its guard is known (uvicorn would build it
            # the same way in `super().load()`).
            self.app = import_from_string(self.app)()
            self.factory = False
        if self.guard is None:
            guard = getattr(self.app, "connection_guard", None)
            if not isinstance(guard, ConnectionGuard):
                raise TypeError(
                    f"{type(self.app).__name__} has no connection_guard: give gateway_config() "
                    "a guard, or serve a TramApp.")
            self.guard = guard
        super().load()


def protocol_options() -> dict[str, Any]:
    """How uvicorn serves a connection in Trạm: its own protocol and loop (also for the tests'
    and the benchmarks' servers, so that they run what `tram serve` runs)."""
    return {
        "http": HttpConnection,
        # uvloop with listeners that accept every waiting connection (loop.py).
        "loop": "tram.server.loop:new_event_loop",
        # Trạm reads no client address (nor X-Forwarded-*): uvicorn's proxy-headers wrapper
        # would only cost every request a pass over its headers.
        "proxy_headers": False,
    }


def gateway_config(app: Any, server: ServerConfig, *, guard: ConnectionGuard | None = None,
                   **options: Any) -> GatewayConfig:
    """The uvicorn Config of a Trạm server (`tram serve`, `tram up`, the tests' and benchmarks'
    servers): Trạm's protocol and loop, the uvicorn settings of `server`, the guard (see
    GatewayConfig), then `options` (host, port, workers, factory, …) over all of these."""
    return GatewayConfig(app, guard, **{**_settings(server), **options})


def _settings(server: ServerConfig) -> dict[str, Any]:
    return {
        **protocol_options(),
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": server.shutdown_grace,
        "timeout_keep_alive": server.keep_alive_timeout,
    }
