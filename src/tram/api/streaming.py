"""Responses that stop the work when the client goes away.

Starlette's StreamingResponse only notices a disconnect when a send fails, and a plain handler
never does. Both helpers here run the work beside a listener for `http.disconnect` and cancel
the work when it arrives, so the engine connection is closed and the engine stops generating.
They use asyncio directly (the gateway runs on uvicorn's asyncio loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive, Scope, Send

from tram.relay.forward import StreamResult
from tram.requestlog import RequestRecord
from tram.transport.deadlines import Ticker

__all__ = ["SSEResponse", "cancel_on_disconnect"]

T = TypeVar("T")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx in front of Trạm not to buffer the stream
]


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


# Most answers are done before this (seconds); only then does a request get a watcher task.
WATCH_AFTER = 0.05


class _Watch:
    """Watches for the client's disconnect, but only from `when` on (via the shared ticker):
    a watcher task made and cancelled on every request was a tenth of the gateway's CPU per
    short request (`python -m bench inprocess`, old and new code alternated), and a client
    that leaves sooner is still noticed, at most a tick later."""

    __slots__ = ("_receive", "_record", "_work", "task", "when")

    def __init__(self, receive: Receive, record: RequestRecord,
                 work: asyncio.Task[object]) -> None:
        self.when = 0.0  # set as the ticker takes it
        self._receive = receive
        self._record = record
        self._work = work
        self.task: asyncio.Future[None] | None = None

    def expire(self) -> None:
        self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await _wait_for_disconnect(self._receive)
        self._record.client_disconnected = True
        self._work.cancel()


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T], record: RequestRecord,
                               ticker: Ticker) -> T | None:
    """Await `work` in this task; if the client disconnects first, cancel it and return None.

    Plain asyncio (one watcher task, cancelling this one, started only once the request has
    lasted WATCH_AFTER) rather than an anyio task group: this runs on every request, and a
    task group costs several times more (docs/decisions.md).
    """
    this = asyncio.current_task()
    assert this is not None
    watch = _Watch(receive, record, this)
    ticker.add(watch, after=WATCH_AFTER)
    try:
        return await work
    except asyncio.CancelledError:
        if not record.client_disconnected:
            raise
        this.uncancel()
        return None
    finally:
        ticker.discard(watch)
        if watch.task is not None:
            watch.task.cancel()


class SSEResponse:
    def __init__(self, result: StreamResult, record: RequestRecord, ticker: Ticker) -> None:
        self._result = result
        self._record = record
        self._ticker = ticker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [*SSE_HEADERS, *self._result.headers]})
            async for frame in self._result.frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await cancel_on_disconnect(receive, stream(), self._record, self._ticker)
        except OSError:
            self._record.client_disconnected = True  # a send failed: the client is gone
        finally:
            # Not shielded (an anyio CancelScope was a measurable share of a stream): closing the
            # frames' generator, which is suspended at a `yield`, awaits nothing, so no
            # cancellation can land inside it, and the engine connection is released in
            # StreamResult.aclose's own `finally` in any case.
            await self._result.aclose()
