"""One client connection: llhttp's parser (httptools) fed from an asyncio Protocol, a `Cycle`
per request, and the guard's bounds applied where the bytes arrive. uvicorn runs it as its
`http` protocol class (keeping the sockets, the workers, the lifespan and the graceful
shutdown; see `shutdown()`); why not uvicorn's own: docs/decisions.md. Bounds (ConnectionGuard):

- the head (request line + headers) is at most `max_head_bytes`, counted on the raw bytes
  before the parser buffers them → 431;
- the first head must arrive whole within `head_timeout` of the connection, and a later one
  within `head_timeout` of its first byte (or of the end of the answer before it, if it began
  while that answer was still going out) → 408 and the connection closed (a connection that
  said nothing is only closed);
- a body may pause at most `body_timeout` between two reads → 408 (if no answer started) and
  the connection closed; a body paused because the app has not read it yet is not timed out;
- an idle keep-alive connection is closed after `keep_alive_timeout`;
- at most `max_connections` connections per process; one more is answered 503 at once;
- at most `max_pipelined` requests parsed and waiting behind the one being answered, holding
  at most `max_pipelined_bytes` (with the bytes read but not parsed yet): past either, reading
  pauses until answers drain (overshot by at most one `_SLICE` of requests, one read of bytes);
- a refused request (malformed, a head too large, HTTP/0.9) is answered after the requests
  pipelined before it are, then the connection closes.

Every deadline is kept by one timer per connection that is re-armed only when it fires early
(a timestamp update per request instead of a timer made and cancelled per request).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import httptools

from tram.errors import (
    HeadersTooLarge,
    MalformedHTTP,
    RequestTimeout,
    ServerBusy,
    TramError,
    raw_http_response,
)
from tram.server.cycle import Cycle, request_scope
from tram.server.guard import ConnectionGuard
from tram.types import ASGIApp

__all__ = ["HttpConnection"]

_HEAD_END = b"\r\n\r\n"
# At most this much is parsed at once where a next request may begin: ~200 of the shortest
# requests, so the pipeline's bound is overshot by little however much one read brings.
_SLICE = 4096


class HttpConnection(asyncio.Protocol):
    """uvicorn's `http` protocol interface: `__init__(config, server_state, app_state)`,
    `shutdown()`, membership of `server_state.connections` and of `.tasks` while a request
    runs. `config` is a GatewayConfig (tram.server), which hands over the guard."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.app: ASGIApp = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self._server_state = server_state
        self._connections: set[Any] = server_state.connections
        self._tasks: set[asyncio.Task[None]] = server_state.tasks
        self._app_state = app_state
        self._root_path: str = config.root_path
        self._keep_alive_timeout: float = config.timeout_keep_alive
        self._guard: ConnectionGuard = config.guard
        self._parser = httptools.HttpRequestParser(self)
        self._parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._server: tuple[str, int] | None = None
        self._client: tuple[str, int] | None = None
        self._scheme = "http"
        self.cycle: Cycle | None = None
        self._pipeline: deque[Cycle] = deque()
        self._backlog = b""  # read, not parsed: it waits for room in the pipeline
        self._queued_bytes = 0  # parsed since the pipeline began (an upper bound of what it holds)
        self._body_left = 0  # of the body being parsed, when it has a length
        # The request whose head is being parsed.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._continue = False
        self._length = b""
        self._bad_head: TramError | None = None
        # Flow control.
        self._read_paused = False
        self.write_paused = False
        self._drained: asyncio.Future[None] | None = None
        # The guard's state: bytes of the head so far, its last 3 bytes (a terminator may
        # straddle two reads), when the current wait began, the one timer.
        self._awaiting_head = True
        self._requests = 0  # heads parsed on this connection
        self._head_bytes = 0
        self._tail = b""
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # No more input is parsed: refused, or ended by an upgrade; `_owed`: a refusal that
        # goes out after the answers before it.
        self._stopped = False
        self._owed: tuple[TramError, str] | None = None

    # -- connection life -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not subclasses of asyncio.Transport, only shaped like it.)
        self.transport = cast(asyncio.Transport, transport)
        self._connections.add(self)
        socket_info = transport.get_extra_info("socket")
        if socket_info is not None:
            self._server = _address(socket_info.getsockname())
            self._client = _address(socket_info.getpeername())
        self._scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        if len(self._connections) > self._guard.max_connections:
            self._refuse(ServerBusy(
                f"This gateway process already holds {self._guard.max_connections} "
                "connections, its limit; retry shortly."), "over_capacity")
            return
        self._since = self.loop.time()
        self._need_check(self._since + self._guard.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cycle in (self.cycle, *self._pipeline):
            if cycle is not None:
                if not cycle.response_complete:
                    cycle.disconnected = True
                cycle.wake()
        self._pipeline.clear()
        self.resume_writing()

    def eof_received(self) -> bool | None:
        return None

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return
        if self._backlog:  # (reading is paused: at most what the transport had in hand)
            self._backlog += data
            return
        self._feed(data)
        if self._stopped:
            return
        if self._awaiting_head:
            if self._head_bytes:
                self._need_check(self._since + self._guard.head_timeout)
        elif self.cycle is not None and self.cycle.more_body \
                and not self.cycle.response_complete:
            self._since = self.loop.time()  # progress: the body's pause starts again
            self._need_check(self._since + self._guard.body_timeout)

    def _head_fits(self, data: bytes | memoryview) -> bool:
        self._head_bytes += len(data)
        if self._head_bytes <= self._guard.max_head_bytes:
            return True
        # Over the limit with these bytes, unless the head ends inside the allowed part of them.
        before = self._head_bytes - len(data) - len(self._tail)
        end = (self._tail + data).find(_HEAD_END)
        return end != -1 and before + end + len(_HEAD_END) <= self._guard.max_head_bytes

    def _feed(self, data: bytes | memoryview) -> None:
        """Parse `data` while the pipeline has room, a slice at a time wherever a next request
        may begin (a body of known length goes whole), each head's size checked on the raw
        bytes before the parser buffers them; keep the rest until answers drain."""
        while data:
            if (self._pipeline or self._queued_bytes) and self._pipeline_full():
                self._backlog = bytes(data)
                self.pause_reading()
                return
            size = max(self._body_left, _SLICE)
            piece: bytes | memoryview = data
            if len(data) > size:
                view = data if isinstance(data, memoryview) else memoryview(data)
                piece, data = view[:size], view[size:]
            else:
                data = b""
            if self._awaiting_head:
                if self._head_bytes == 0 and self._requests:
                    self._since = self.loop.time()  # a later head: its own time to arrive
                if not self._head_fits(piece):
                    self._refuse_in_turn(HeadersTooLarge(
                        f"The request line and headers exceed {self._guard.max_head_bytes} "
                        "bytes."), "head_too_large")
                    return
            self._parse(piece)
            if self._stopped:
                return
            if self._awaiting_head and self._head_bytes:
                self._tail = (self._tail + bytes(piece[-3:]))[-3:]
            if self._pipeline:
                self._queued_bytes += len(piece)
        if (self._pipeline or self._queued_bytes) and self._pipeline_full():
            self.pause_reading()

    def _pipeline_full(self) -> bool:
        """Whether requests parsed behind the one being answered fill their bounds (asked
        where something is queued at all: the usual connection has nothing behind it)."""
        return len(self._pipeline) >= self._guard.max_pipelined \
            or self._queued_bytes >= self._guard.max_pipelined_bytes

    def _parse(self, data: bytes | memoryview) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No upgrade is served (no WebSocket route): the request was answered as plain
            # HTTP, and the connection ends with that answer.
            cycle = self._receiving()
            if cycle is not None:
                cycle.keep_alive = False
            self._stopped = True
        except httptools.HttpParserError:
            error, self._bad_head = self._bad_head, None
            self._refuse_in_turn(error or MalformedHTTP(
                "The HTTP request is malformed (e.g. both Content-Length and Transfer-Encoding, "
                "an invalid length or chunk size, or a forbidden character in a header)."),
                "invalid_http")

    def _refuse_in_turn(self, error: TramError, reason: str) -> None:
        """Refuse what the client sent next, once the requests before it are answered."""
        receiving = self._receiving()
        if receiving is not None and receiving.more_body and not receiving.response_complete:
            # The refused bytes are this request's own body.
            if receiving is self.cycle:
                self._refuse(None if receiving.response_started else error, reason)
                return
            self._pipeline.pop()  # never started: the refusal is its answer
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(error, reason)
            return
        self._stopped = True
        self._owed = (error, reason)
        self._backlog = b""
        self.pause_reading()

    def _refuse(self, error: TramError | None, reason: str) -> None:
        """Count the closure, answer `error` (None: nothing to answer), close."""
        self._stopped = True
        self._guard.count(reason)
        if error is not None:
            self.transport.write(raw_http_response(error))
        self.transport.close()

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._requests:
            # A next head has begun, perhaps in the read that ended the previous request
            # (whose bytes were counted then): it is pending from here on.
            self._head_bytes = max(self._head_bytes, 1)
        self._url = b""
        self._headers = []
        self._continue = False
        self._length = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self._continue = True
        elif name == b"content-length":
            self._length = value  # (llhttp refuses a second one, or one with anything but digits)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            # llhttp takes a request line without a version as HTTP/0.9 (whose answer would be
            # a bare body), and reads "HTTP/2.0" as if it were HTTP/1.
            self._bad_head = MalformedHTTP(
                f"HTTP/{version} is not served here; send HTTP/1.1 (or HTTP/1.0).")
            raise ValueError(version)  # the parser stops; _parse answers with _bad_head
        self._awaiting_head = False
        self._requests += 1
        self._head_bytes = 0
        self._tail = b""
        self._body_left = int(self._length) if self._length else 0
        scope = request_scope(parser.get_method(), version, self._url, self._headers,
                              (self._server, self._client, self._scheme), self._root_path,
                              self._app_state.copy())
        cycle = Cycle(self, scope, version != "1.0" and parser.should_keep_alive(),
                      self._continue)
        if self.cycle is None or self.cycle.response_complete:
            self.cycle = cycle
            self._start(cycle)
        else:
            self._pipeline.append(cycle)  # it waits for the answer before it (_feed bounds them)

    def _receiving(self) -> Cycle | None:
        """The request whose body is arriving: the last one pipelined, else the current."""
        return self._pipeline[-1] if self._pipeline else self.cycle

    def on_body(self, body: bytes) -> None:
        self._body_left -= len(body)
        cycle = self._receiving()
        if cycle is not None and not cycle.response_complete:
            cycle.add_body(body)

    def on_message_complete(self) -> None:
        # From here on, bytes are the next head's (pipelined or not): bounded as such.
        self._awaiting_head = True
        self._body_left = 0
        cycle = self._receiving()
        if cycle is not None and not cycle.response_complete:
            cycle.body_complete()

    def _start(self, cycle: Cycle) -> None:
        # In uvicorn's task set while it runs (its graceful shutdown waits for that set to
        # empty); the cycle takes itself out when done (cheaper than a done callback).
        cycle.task = task = self.loop.create_task(cycle.run(self.app, self._tasks))
        self._tasks.add(task)

    # -- from the cycle --------------------------------------------------------------------

    def response_complete(self, cycle: Cycle) -> None:
        self._server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self._pipeline:
            self.cycle = self._pipeline.popleft()
            if not self._pipeline:
                self._queued_bytes = 0
            self._start(self.cycle)
            if self._backlog and not self._stopped:  # what waited for room in the pipeline
                backlog, self._backlog = self._backlog, b""
                self._feed(backlog)
            self.resume_reading()
            return
        if self._owed is not None:  # every answer before the refused request is out
            self._refuse(*self._owed)
            return
        self.resume_reading()
        # Idle from now, or the next head (begun while this answer was going out) has its
        # whole time to arrive from now: the client was waiting for this answer.
        self._since = self.loop.time()
        self._need_check(self._since + (self._guard.head_timeout if self._head_bytes
                                        else self._keep_alive_timeout))

    def default_headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = self._server_state.default_headers
        return headers

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def closing(self) -> bool:
        return self.transport.is_closing()

    # -- flow control ----------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and not self._backlog and not self._stopped \
                and not self._pipeline_full() and not self.transport.is_closing():
            self._read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        if self._drained is None:
            self._drained = self.loop.create_future()
        await self._drained

    # -- uvicorn's graceful shutdown -------------------------------------------------------

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False

    # -- the one timer ---------------------------------------------------------------------

    def _need_check(self, when: float) -> None:
        """Make sure the timer fires by `when` (an earlier one re-arms itself if needed)."""
        if self._timer is None or self._timer_at > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self.loop.call_at(when, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        idle = cycle is None or cycle.response_complete
        if self._awaiting_head and idle:
            kept_alive = self._head_bytes == 0 and self._requests > 0
            limit = self._keep_alive_timeout if kept_alive else self._guard.head_timeout
            if now < self._since + limit:
                self._need_check(self._since + limit)
            elif kept_alive:
                self.transport.close()  # an idle keep-alive connection: not a refusal
            else:  # a head that never ended; or connected and silent: nothing to answer
                self._refuse(RequestTimeout(
                    f"The request head did not arrive within {self._guard.head_timeout:g}s.")
                    if self._head_bytes else None, "head_timeout")
            return
        if cycle is None or not cycle.more_body or cycle.response_complete:
            return  # the app is working: no deadline of the client's
        if self._read_paused or now < self._since + self._guard.body_timeout:
            # (Paused: the app has not read what arrived, which is not the client's fault.)
            self._need_check(max(now, self._since) + self._guard.body_timeout)
            return
        # The app waits in receive(); with the connection lost it gets http.disconnect, and
        # what it sends after that is dropped. (An answer already begun cannot become a 408.)
        self._refuse(None if cycle.response_started else RequestTimeout(
            f"The request body stopped arriving for {self._guard.body_timeout:g}s."),
            "body_timeout")


def _address(name: Any) -> tuple[str, int] | None:
    if isinstance(name, tuple) and len(name) >= 2:
        return (str(name[0]), int(name[1]))
    return None
