"""The HTTP server: uvicorn (httptools) with a guard that bounds every client.

uvicorn bounds neither the request head nor the time a head or body may take to arrive: an
unfinished 8 MB header, a slowloris connection or a body shorter than its Content-Length holds
memory and a connection for ever. `GuardedHttpToolsProtocol` is uvicorn's own protocol class with
four bounds added where the bytes arrive, before any app code runs:

- the head (request line + headers) is at most `server.max_head_bytes`, counted on the raw bytes
  before the parser buffers them → 431;
- the head must arrive whole within `server.head_timeout` seconds of the connection (or of the
  previous response) → 408 and the connection closed;
- a body may pause at most `server.body_timeout` seconds between two reads → 408 (when no answer
  has started) and the connection closed; a body paused because the app does not read it yet
  (flow control) is not the client's fault and is not timed out;
- at most `server.max_connections` connections per process; one more is answered 503 at once.

Bytes the parser refuses are answered in the OpenAI error shape instead of uvicorn's plain text.
Each closure is counted in `tram_connections_closed_total{reason}`. Why a protocol subclass and
not an ASGI middleware or another server: docs/decisions.md ("Bounding clients in the server").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tram.config import ServerConfig
from tram.errors import (
    HeadersTooLarge,
    MalformedHTTP,
    RequestTimeout,
    ServerBusy,
    TramError,
    raw_http_response,
)
from tram.metrics import Metrics

__all__ = ["ConnectionGuard", "GuardedHttpToolsProtocol", "uvicorn_options"]

logger = logging.getLogger("tram.server")

_HEAD_END = b"\r\n\r\n"


class ConnectionGuard:
    """The bounds of one gateway process and where their refusals are counted."""

    def __init__(self, config: ServerConfig, metrics: Metrics | None = None) -> None:
        self.max_head_bytes = config.max_head_bytes
        self.head_timeout = config.head_timeout
        self.body_timeout = config.body_timeout
        self.max_connections = config.max_connections
        self._closed = metrics.connections_closed if metrics is not None else None
        self._children: dict[str, Any] = {}

    def count(self, reason: str) -> None:
        if self._closed is None:
            return
        child = self._children.get(reason)
        if child is None:
            child = self._children[reason] = self._closed.labels(reason)
        child.inc()


_DEFAULT_GUARD = ServerConfig()


def _guard_of(app: Any) -> ConnectionGuard:
    """The guard of the Trạm app that uvicorn serves (through any wrapper uvicorn added)."""
    for _ in range(8):
        guard = getattr(app, "connection_guard", None)
        if isinstance(guard, ConnectionGuard):
            return guard
        app = getattr(app, "app", None)
        if app is None:
            break
    return ConnectionGuard(_DEFAULT_GUARD)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's bounds (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = _guard_of(self.app)
        self._awaiting_head = True  # between requests, and while a head is arriving
        self._head_bytes = 0
        self._tail = b""  # the last bytes of the head so far: a terminator may straddle reads
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False

    # -- connection life -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._guard.max_connections:
            self._refuse(ServerBusy(
                f"This gateway process already holds {self._guard.max_connections} "
                "connections, its limit; retry shortly."), "over_capacity")
            return
        self._arm(self._guard.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_head and not self._head_fits(data):
            self._refuse(HeadersTooLarge(
                f"The request line and headers exceed {self._guard.max_head_bytes} bytes."),
                "head_too_large")
            return
        super().data_received(data)
        # Timers only for what is still incomplete after these bytes: a request that arrives
        # whole in one read (nearly all of them) costs no timer at all.
        if self._awaiting_head:
            self._tail = (self._tail + data)[-3:]
            if self._timer is None:
                self._arm(self._guard.head_timeout, self._head_timed_out)
        elif self.cycle is not None and self.cycle.more_body and not self.cycle.response_complete:
            self._arm(self._guard.body_timeout, self._body_timed_out)  # progress: start again

    def _head_fits(self, data: bytes) -> bool:
        self._head_bytes += len(data)
        if self._head_bytes <= self._guard.max_head_bytes:
            return True
        # Over the limit with this read, unless the head ends inside the allowed part of it.
        before = self._head_bytes - len(data) - len(self._tail)
        end = (self._tail + data).find(_HEAD_END)
        return end != -1 and before + end + len(_HEAD_END) <= self._guard.max_head_bytes

    def send_400_response(self, msg: str) -> None:
        # uvicorn's parser-error answer, in the OpenAI shape.
        self._guard.count("invalid_http")
        self._disarm()
        self.transport.write(raw_http_response(MalformedHTTP(
            "The HTTP request is malformed (e.g. both Content-Length and Transfer-Encoding, an "
            "invalid length or chunk size, or a forbidden character in a header).")))
        self.transport.close()

    # -- parser callbacks ------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._tail = b""
        if self._timer is not None:
            self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._timer is not None:
            self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._timer is not None:
            self._disarm()
        self._awaiting_head = True
        super().on_response_complete()

    # -- timers ----------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._awaiting_head:
            return
        if self._head_bytes == 0:
            # Connected and silent: nothing to answer, only a socket to give back.
            self._guard.count("head_timeout")
            self.transport.close()
            return
        self._refuse(RequestTimeout(
            f"The request head did not arrive within {self._guard.head_timeout:g}s."),
            "head_timeout")

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body \
                or cycle.response_complete:
            return
        if self.flow.read_paused:  # the app has not read what arrived: not the client's fault
            self._arm(self._guard.body_timeout, self._body_timed_out)
            return
        self._guard.count("body_timeout")
        if not cycle.response_started:
            # The app is waiting in receive(); once the connection is lost it gets
            # http.disconnect, and anything it sends after that is dropped by uvicorn.
            self.transport.write(raw_http_response(RequestTimeout(
                f"The request body stopped arriving for {self._guard.body_timeout:g}s.")))
        self.transport.close()  # the app's receive() now answers http.disconnect

    def _refuse(self, error: TramError, reason: str) -> None:
        self._refused = True
        self._disarm()
        self._guard.count(reason)
        self.transport.write(raw_http_response(error))
        self.transport.close()


def uvicorn_options(config: ServerConfig) -> dict[str, Any]:
    """The uvicorn settings every Trạm gateway runs with (`tram serve`, `tram up`)."""
    return {
        "http": GuardedHttpToolsProtocol,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": config.shutdown_grace,
        "timeout_keep_alive": config.keep_alive_timeout,
    }
