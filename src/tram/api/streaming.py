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

import anyio
from starlette.types import Receive, Scope, Send

from tram.relay.chat import StreamResult
from tram.requestlog import RequestRecord

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


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T],
                               record: RequestRecord) -> T | None:
    """Await `work` in this task; if the client disconnects first, cancel it and return None.

    Plain asyncio (one watcher task, cancelling this one) rather than an anyio task group: this
    runs on every request, and a task group costs several times more (bench/RESULTS.md).
    """
    this = asyncio.current_task()
    assert this is not None

    async def watch() -> None:
        await _wait_for_disconnect(receive)
        record.client_disconnected = True
        this.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not record.client_disconnected:
            raise
        this.uncancel()
        return None
    finally:
        watcher.cancel()


class SSEResponse:
    def __init__(self, result: StreamResult, record: RequestRecord) -> None:
        self._result = result
        self._record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            async for frame in self._result.frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await cancel_on_disconnect(receive, stream(), self._record)
        except OSError:
            self._record.client_disconnected = True  # a send failed: the client is gone
        finally:
            with anyio.CancelScope(shield=True):
                await self._result.aclose()
