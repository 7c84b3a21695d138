"""The gateway's event loop: uvloop, with listening sockets that accept every waiting
connection when they are ready, not one per turn of the loop.

libuv (uvloop's core) accepts one connection per loop iteration since 1.45 (libuv PR #3696:
most accept() calls after the first fail with EAGAIN). That is cheap when the loop is idle and
unfair when it is saturated: one iteration then serves every ready connection (tens of ms at
c=256), so the k-th of many new connections waits k iterations before its first request is
read, in connection order, while older connections are served every iteration (measured in
docs/decisions.md, "Accepting connections"). Here each listening socket also
has a reader (on a dup of its descriptor, as libuv's watcher holds the original) that accepts
up to 64 connections each time the socket is ready, and hands each to the loop as an
accepted socket with the server's protocol; libuv's own accept then finds the queue empty,
which it handles. TLS listeners (Trạm's TLS is terminated in front: docs/decisions.md) keep
libuv's accept alone. Without uvloop, asyncio's own loop already accepts greedily.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["GreedyAcceptServer", "new_event_loop"]

logger = logging.getLogger("tram.server")

# At most this many connections accepted per readiness: with `--workers N` every worker
# is woken by the shared socket, and a first one to wake must not take a whole burst.
_MAX_PER_WAKE = 64

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio is the fallback
    uvloop = None  # type: ignore[assignment]


class GreedyAcceptServer:
    """A loop's server whose sockets also accept greedily (see the module docstring); every
    other use goes to the server itself."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: asyncio.AbstractServer,
                 protocol_factory: Callable[[], asyncio.BaseProtocol],
                 listeners: Any) -> None:
        self._loop = loop
        self._server = server
        self._factory = protocol_factory
        self._readers: list[socket.socket] = []
        for listener in listeners:
            reader = socket.socket(fileno=os.dup(listener.fileno()))
            reader.setblocking(False)
            loop.add_reader(reader.fileno(), self._accept, reader)
            self._readers.append(reader)

    def _accept(self, reader: socket.socket) -> None:
        tcp = reader.family in (socket.AF_INET, socket.AF_INET6)
        for _ in range(_MAX_PER_WAKE):
            try:
                connection, _ = reader.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: libuv's accept will report it
                logger.warning("accept failed: %s", exc)
                return
            connection.setblocking(False)
            if tcp:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._loop.create_task(self._serve(connection))

    async def _serve(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, connection)
        except OSError:
            connection.close()  # the client left before its connection was set up

    def _stop_accepting(self) -> None:
        for reader in self._readers:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(reader.fileno())
            reader.close()
        self._readers.clear()

    def close(self) -> None:
        self._stop_accepting()
        self._server.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


if uvloop is not None:

    class TramLoop(uvloop.Loop):
        async def create_server(self, protocol_factory: Any, *args: Any,
                                **kwargs: Any) -> Any:
            server: Any = await super().create_server(protocol_factory, *args, **kwargs)
            if kwargs.get("ssl") is not None or not kwargs.get("start_serving", True):
                return server
            return GreedyAcceptServer(self, server, protocol_factory, server.sockets)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory (`loop="tram.server.loop:new_event_loop"`) and `tram up`'s."""
    if uvloop is None:  # pragma: no cover
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = TramLoop()
    return loop
