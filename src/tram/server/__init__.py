"""The HTTP/1.1 server of the gateway: uvicorn runs the sockets, workers, lifespan and graceful
shutdown; each connection is Trạm's own protocol (connection.py), which bounds every client
(guard.py) and runs each request's ASGI cycle (cycle.py). Why a protocol of our own rather than
uvicorn's with a subclass, or another server: docs/decisions.md ("Bounding clients in the
server", "An HTTP/1.1 protocol of our own")."""

from __future__ import annotations

from typing import Any

from tram.config import ServerConfig
from tram.server.connection import HttpConnection
from tram.server.guard import ConnectionGuard

__all__ = ["ConnectionGuard", "HttpConnection", "protocol_options", "uvicorn_options"]


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


def uvicorn_options(config: ServerConfig) -> dict[str, Any]:
    """The uvicorn settings every Trạm gateway runs with (`tram serve`, `tram up`)."""
    return {
        **protocol_options(),
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": config.shutdown_grace,
        "timeout_keep_alive": config.keep_alive_timeout,
    }
