"""Responses that stop the work when the client goes away.

Starlette's StreamingResponse only notices a disconnect when a send fails, and a plain handler
never does. Both helpers here run the work beside a listener for `http.disconnect` and cancel
the work when it arrives, so the engine connection is closed and the engine stops generating.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


async def cancel_on_disconnect(receive: Receive, work: Callable[[], Awaitable[T]],
                               record: RequestRecord) -> T | None:
    """Run `work`; if the client disconnects first, cancel it and return None."""
    result: list[T] = []
    failure: list[Exception] = []

    async with anyio.create_task_group() as group:

        async def run() -> None:
            # Errors are carried out of the task group by hand so that callers see the
            # TramError itself, not an ExceptionGroup around it.
            try:
                result.append(await work())
            except Exception as exc:  # noqa: BLE001 - re-raised below, unchanged
                failure.append(exc)
            group.cancel_scope.cancel()

        async def watch() -> None:
            await _wait_for_disconnect(receive)
            record.client_disconnected = True
            group.cancel_scope.cancel()

        group.start_soon(run)
        group.start_soon(watch)
    if failure:
        raise failure[0]
    return result[0] if result else None


class SSEResponse:
    def __init__(self, result: StreamResult, record: RequestRecord,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self._result = result
        self._record = record
        self._headers = SSE_HEADERS + headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    try:
                        await send({"type": "http.response.start", "status": 200,
                                    "headers": self._headers})
                        async for frame in self._result.frames:
                            await send({"type": "http.response.body", "body": frame,
                                        "more_body": True})
                        await send({"type": "http.response.body", "body": b"",
                                    "more_body": False})
                    except OSError:
                        self._record.client_disconnected = True  # a send failed: client gone
                    group.cancel_scope.cancel()

                async def watch() -> None:
                    await _wait_for_disconnect(receive)
                    self._record.client_disconnected = True
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                group.start_soon(watch)
        finally:
            with anyio.CancelScope(shield=True):
                await self._result.aclose()
