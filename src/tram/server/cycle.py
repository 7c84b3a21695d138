"""One request on an HTTP/1.1 connection, as the ASGI app sees it: `receive()` and `send()`.

What it keeps from uvicorn's cycle (the ASGI semantics every test relies on): the body handed
over as it arrives, `http.disconnect` once the client is gone or the answer is complete, a
`100 Continue` sent only when the app first reads, a length or chunked framing chosen from the
app's headers, `connection: close` honoured, HEAD answered without a body, writes held back
while the client does not read (flow control). What it drops, because it costs every request
something and Trạm needs none of it: an `asyncio.Event` per request (one future, made only when
the app really has to wait), a second write for the head of a response with a length (head and
body leave in one `send(2)`), and uvicorn's access logger (Trạm writes its own line).
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import urllib.parse
from typing import Any, Protocol

import httptools

from tram.errors import raw_http_response, unexpected_error
from tram.types import ASGIApp, Message, Scope

__all__ = ["Channel", "Cycle", "request_scope"]


class Channel(Protocol):
    """What a request's cycle uses of its connection (server/connection.py's HttpConnection)."""

    loop: asyncio.AbstractEventLoop
    write_paused: bool

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def closing(self) -> bool: ...
    async def drain(self) -> None: ...
    def response_complete(self, cycle: Cycle) -> None: ...
    def default_headers(self) -> list[tuple[bytes, bytes]]: ...

logger = logging.getLogger("tram.server")

# What no header name or value may hold (a response splitting attempt through a relayed value).
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_DISCONNECT: Message = {"type": "http.disconnect"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# What a client gets when the app failed before answering (the traceback goes to the log).
_FAILED = raw_http_response(unexpected_error())
# Past this many buffered body bytes the app has not read, reading from the client pauses.
HIGH_WATER = 65536


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


def request_scope(method: bytes, version: str, url: bytes, headers: list[tuple[bytes, bytes]],
                  where: tuple[Any, Any, str], root_path: str, state: dict[str, Any]) -> Scope:
    """The ASGI scope of a request whose head was parsed (`where`: server and client
    addresses, scheme)."""
    if url[:1] == b"/" and url[1:2] != b"/" and b"?" not in url and b"%" not in url \
            and b"#" not in url:
        raw_path, query = url, b""  # nearly every request: no parsing needed
    else:
        parsed = httptools.parse_url(url)
        raw_path, query = parsed.path, parsed.query or b""
    path = raw_path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": version,
        "server": where[0],
        "client": where[1],
        "scheme": where[2],
        "root_path": root_path,
        "headers": headers,
        "state": state,
        "method": method.decode("ascii"),
        "path": root_path + path if root_path else path,
        "raw_path": root_path.encode("ascii") + raw_path if root_path else raw_path,
        "query_string": query,
    }


class Cycle:
    """The request's state from its head to the end of its answer."""

    __slots__ = ("_chunks", "_connection", "_head", "_waiter", "buffered", "chunked",
                 "disconnected", "is_head", "keep_alive", "left", "more_body", "request_read",
                 "response_complete", "response_started", "scope", "task", "wants_continue")

    def __init__(self, connection: Channel, scope: Scope, keep_alive: bool,
                 wants_continue: bool) -> None:
        self._connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.wants_continue = wants_continue
        self.is_head = scope["method"] == "HEAD"
        self._chunks: list[bytes] = []
        self.buffered = 0
        self.more_body = True
        self.request_read = False  # the app has had the whole body
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.left = 0  # body bytes still owed when the answer has a length
        self._head = b""  # a head held back to leave with the first body bytes
        self._waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    # -- from the connection ---------------------------------------------------------------

    def add_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER:
            self._connection.pause_reading()
        self.wake()

    def body_complete(self) -> None:
        self.more_body = False
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = self._connection.loop.create_future()
        await waiter

    # -- the ASGI app's side ---------------------------------------------------------------

    async def run(self, app: ASGIApp, running: set[asyncio.Task[None]]) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:  # the app's own bug; the connection must survive it
            logger.error("Exception in ASGI application", exc_info=exc)
            if not self.response_started:
                self._abort(_FAILED)
            else:
                self._connection.close()
        else:
            if not self.response_complete and not self.disconnected:
                logger.error("ASGI app returned without %s the response",
                             "completing" if self.response_started else "starting")
                self._abort(b"" if self.response_started else _FAILED)
        finally:
            if self.task is not None:
                running.discard(self.task)

    def _abort(self, answer: bytes) -> None:
        if answer and not self.disconnected:
            self._connection.write(answer)
        self.response_complete = True
        self._connection.close()

    async def receive(self) -> Message:
        if self.wants_continue:
            self.wants_continue = False
            if not self._connection.closing():
                self._connection.write(_CONTINUE)
        if self.disconnected or self.response_complete:
            return _DISCONNECT
        if self.request_read:
            # The whole body was handed over: what is left to say is that the client left (or
            # that the answer is complete).
            while not (self.disconnected or self.response_complete):
                await self._wait()
            return _DISCONNECT
        if not self._chunks and self.more_body:
            self._connection.resume_reading()
            while not self._chunks and self.more_body and not self.disconnected:
                await self._wait()
            if self.disconnected or self.response_complete:
                return _DISCONNECT
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self.buffered = 0
        if self.more_body:
            self._connection.resume_reading()
        else:
            self.request_read = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
        connection = self._connection
        if connection.write_paused and not self.disconnected:
            await connection.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', got {kind!r}.")
            self._start(message["status"], message.get("headers", ()))
            return
        if self.response_complete:
            raise RuntimeError(f"Unexpected {kind!r} after the response completed.")
        if kind != "http.response.body":
            raise RuntimeError(f"Expected 'http.response.body', got {kind!r}.")
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if self.is_head:
            out = b""
        elif self.chunked:
            out = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                out += b"0\r\n\r\n"
        else:
            if len(body) > self.left:
                raise RuntimeError("Response content longer than Content-Length")
            self.left -= len(body)
            out = body
        if self._head:
            out = self._head + out
            self._head = b""
        if out:
            connection.write(out)
        if not more_body:
            if self.left and not self.is_head:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.wake()
            if not self.keep_alive:
                connection.close()
            connection.response_complete(self)

    def _start(self, status: int, headers: Any) -> None:
        self.response_started = True
        self.wants_continue = False
        if self.more_body:
            # Answered before the body was all sent (a 413, say): the rest of it cannot be
            # told from the next request, so the connection ends with this answer.
            self.keep_alive = False
        parts = [STATUS_LINES[status]]
        for name, value in self._connection.default_headers():
            parts += (name, b": ", value, b"\r\n")
        length: int | None = None
        close = False
        for name, value in headers:
            if _BAD_NAME.search(name) or _BAD_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header name or value.")
            lowered = name.lower()
            if lowered == b"content-length":
                if length is None:
                    length = int(value)
            elif lowered == b"transfer-encoding":
                if value.lower() == b"chunked":
                    self.chunked = True
            elif lowered == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                close = True
            parts += (lowered, b": ", value, b"\r\n")
        if not self.keep_alive and not close:
            parts.append(b"connection: close\r\n")
        if self.chunked:
            length = None
        elif length is not None:
            self.left = length
        elif not self.is_head and status not in (204, 304):
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        if length is not None and length > 0 and not self.is_head:
            # The body follows at once (the app sends it next): one write for both.
            self._head = head
        else:
            self._connection.write(head)
