"""A small HTTP/1.1 client for the gateway's one hot call: POST JSON to an engine, read the
answer (whole or as it streams), keep the connection alive for the next request. The health
probes (GET /models) use it too.

Why not a general client: on this path aiohttp spent ~35% of the gateway's CPU per request
(bench/RESULTS.md) on features an engine call does not use (cookies, redirects, proxies,
tracing, multipart). This is an asyncio Protocol with llhttp's parser (httptools, which uvicorn
already uses), pooled keep-alive connections per engine, and nothing else. Anything unusual
(a lost connection, a parse error) closes the connection; it is never reused.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Awaitable, Callable

import httptools

__all__ = [
    "ConnectTimeout",
    "ConnectionPool",
    "PooledResponse",
    "UpstreamBroken",
    "UpstreamClosedEarly",
]

_PAUSE_ABOVE = 1 << 20  # buffered body bytes before we stop reading from the socket
_MAX_IDLE_PER_HOST = 256


# Connections are shared only between requests to the same host, port and TLS settings: a
# connection verified against one CA must not serve an upstream configured with another.
_PoolKey = tuple[str, int, "ssl.SSLContext | None"]


class ConnectTimeout(OSError):
    """No TCP connection to the engine within the connect timeout."""


class UpstreamBroken(OSError):
    """The engine's connection broke or spoke bad HTTP after the request was sent."""


class UpstreamClosedEarly(UpstreamBroken):
    """The connection closed before any response byte: a reused keep-alive connection the
    engine had closed. Nothing was processed; the request may be sent again."""


class _Connection(asyncio.Protocol):
    def __init__(self, pool: ConnectionPool, key: _PoolKey) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._headers_done: asyncio.Future[None] | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._got_bytes = False
        self._error: BaseException | None = None
        # The reader's wait for more body bytes: a bare future, not an asyncio.Event (whose
        # wait() is a coroutine and a list of waiters, per relayed chunk).
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.status = 0
        self.keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"bad HTTP from the engine: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._complete:
            if self._got_bytes:
                self._fail(UpstreamBroken("the engine closed the connection mid-answer"))
            else:
                self._fail(UpstreamClosedEarly("the engine closed the connection"))
        self.pool.forget(self)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self._headers_done is not None and not self._headers_done.done():
            self._headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        self._wake()
        if self._buffered > _PAUSE_ABOVE and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self._complete = True
        self.keep_alive = self._parser.should_keep_alive()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # use
    def _fail(self, error: BaseException) -> None:
        self._error = error
        if self._headers_done is not None and not self._headers_done.done():
            self._headers_done.set_exception(error)
        self._wake()
        if self.transport is not None:
            self.transport.close()

    async def request(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        self._headers_done = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)
        await self._headers_done

    async def read_chunk(self) -> bytes:
        """All body bytes that have arrived (at least one); b"" at the end of the body.
        Pieces that arrived together are returned together: one relay step, not one each."""
        while True:
            if self._body:  # inline, not read_buffered(): this runs per relayed chunk
                chunk = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
                self._body.clear()
                self._buffered = 0
                if self._paused and self.transport:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def read_buffered(self) -> bytes:
        """The body bytes that have arrived, taken (b"" if none)."""
        body = self._body
        chunk = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._paused and self.transport:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers_done = None
        self._body.clear()
        self._buffered = 0
        self._complete = False
        self._got_bytes = False
        self._error = None
        self.status = 0
        self.keep_alive = False


async def _at_end() -> bytes:
    return b""


class PooledResponse:
    """An engine's response whose headers have arrived."""

    def __init__(self, connection: _Connection) -> None:
        self._connection: _Connection | None = connection
        self.status_code = connection.status

    async def aread(self) -> bytes:
        connection = self._connection
        if connection is None:
            return b""
        parts = []
        while chunk := await connection.read_chunk():  # no async iterator in between
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def arrived(self) -> bytes | None:
        """The whole body if all of it has arrived (it is then taken), else None."""
        connection = self._connection
        if connection is None:
            return b""
        if not connection._complete:
            return None
        return connection.read_buffered()

    def reader(self) -> Callable[[], Awaitable[bytes]]:
        """What returns the body bytes that have arrived (at least one), b"" at the end: the
        relay awaits it directly (an async iterator in between cost a generator step a chunk)."""
        connection = self._connection
        return connection.read_chunk if connection is not None else _at_end

    def close(self) -> None:
        """Return the connection to the pool if the answer was read to its end and the engine
        keeps connections alive; otherwise close it (that is how an engine learns that the
        client went away)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection._complete and connection.keep_alive and not connection.closed:
            connection.pool.release(connection)
        elif connection.transport is not None:
            connection.transport.close()


class ConnectionPool:
    def __init__(self) -> None:
        self._idle: dict[_PoolKey, list[_Connection]] = {}

    def forget(self, connection: _Connection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= _MAX_IDLE_PER_HOST:
            assert connection.transport is not None
            connection.transport.close()
            return
        connection.reset()
        connection.reused = True
        idle.append(connection)

    async def _connect(self, host: str, port: int, tls: ssl.SSLContext | None,
                       connect_timeout: float, fresh: bool = False) -> _Connection:
        key = (host, port, tls)
        idle = self._idle.get(key)
        while idle and not fresh:
            connection = idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                if host.startswith("/"):  # an engine on a Unix socket (see upstream._target)
                    _, protocol = await loop.create_unix_connection(
                        lambda: _Connection(self, key), host)
                else:
                    _, protocol = await loop.create_connection(
                        lambda: _Connection(self, key), host, port, ssl=tls,
                        server_hostname=host if tls else None)
        except TimeoutError:
            raise ConnectTimeout(f"no connection within {connect_timeout:g}s") from None
        return protocol

    async def request(self, host: str, port: int, tls: ssl.SSLContext | None, head: bytes,
                      body: bytes, connect_timeout: float) -> PooledResponse:
        """Send; return once the response headers arrived. Raises OSError subclasses."""
        connection = await self._connect(host, port, tls, connect_timeout)
        for attempt in (1, 2):
            try:
                await connection.request(head, body)
                return PooledResponse(connection)
            except UpstreamClosedEarly:
                if not connection.reused or attempt == 2:
                    raise
                # A reused keep-alive connection the engine had just closed: nothing was
                # processed; once more on a new connection.
                connection = await self._connect(host, port, tls, connect_timeout, fresh=True)
            except BaseException:
                if connection.transport is not None:
                    connection.transport.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                if connection.transport is not None:
                    connection.transport.close()
        self._idle.clear()
