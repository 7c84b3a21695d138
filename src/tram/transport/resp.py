"""A small Redis client for the limiter's two calls per request (EVALSHA admit and release).

Why not redis-py: measured in `python -m bench gateway`, its asyncio client made the Redis-shared
limits cost ×2.6 the gateway's CPU per request (a connection-pool checkout, a lock, retry and
encoder layers per command). This is one pipelined connection per process: commands are written
as they come, replies (parsed by hiredis, Redis's own C parser) resolve the waiting futures in
order. A timeout or a broken connection fails every command waiting on it and closes it; the
next command opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

from tram.transport.deadlines import Ticker

__all__ = ["RedisUnavailable", "ReplyError", "RespClient", "Script"]

ReplyError = hiredis.ReplyError


class RedisUnavailable(OSError):
    """No answer from Redis: not reachable, connection lost, or too slow."""


def _pack(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisUnavailable("the connection to Redis was lost"))

    def fail(self, error: Exception) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        assert self.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.transport.write(payload)
        return future


class RespClient:
    """`redis://[:password@]host[:port][/db]`; every call bounded by `timeout` seconds."""

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported, got {parts.scheme}://")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = unquote(parts.password) if parts.password else None
        self._username = unquote(parts.username) if parts.username else None
        self._db = int(parts.path.strip("/") or 0)
        self._timeout = timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._deadlines = Ticker()

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is not None and not self._connection.closed:
                return self._connection
            loop = asyncio.get_running_loop()
            try:
                async with self._deadlines.timeout(self._timeout):
                    _, connection = await loop.create_connection(_Connection, self._host,
                                                                 self._port)
                    setup = []
                    if self._password is not None:
                        auth = (("AUTH", self._username, self._password) if self._username
                                else ("AUTH", self._password))
                        setup.append(connection.send(_pack(auth)))
                    if self._db:
                        setup.append(connection.send(_pack(("SELECT", self._db))))
                    for reply in setup:
                        await reply
            except (OSError, TimeoutError) as exc:
                raise RedisUnavailable(f"Redis at {self._host}:{self._port} is unreachable "
                                       f"({type(exc).__name__})") from None
            self._connection = connection
            return connection

    async def call(self, *args: Any) -> Any:
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        reply = connection.send(_pack(args))
        try:
            async with self._deadlines.timeout(self._timeout):
                return await reply
        except TimeoutError:
            # The reply may still come and would answer the wrong command: drop the connection.
            connection.fail(RedisUnavailable("Redis did not answer in time"))
            raise RedisUnavailable(f"Redis did not answer within {self._timeout:g}s") from None

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.fail(RedisUnavailable("client closed"))
            self._connection = None


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded on first use or after a Redis restart."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: RespClient, keys: list[str] | tuple[str, ...],
                       args: list[Any] | tuple[Any, ...]) -> Any:
        try:
            return await client.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await client.call("EVAL", self.source, len(keys), *keys, *args)
