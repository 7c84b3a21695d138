"""The usage writer's background task: store what dead gateways left, then flush every
`interval` (or when woken by a full batch), retrying a database that fails with backoff (no
early wake meanwhile: a full batch per request would otherwise retry per request). A task that
dies of anything else is a bug: it is logged loudly and started again a second later, the
events staying buffered and journaled meanwhile. `stop` lets the write in progress finish (a
write is never cancelled halfway) unless it outlasts the deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError

__all__ = ["WriterTask"]

logger = logging.getLogger("tram.usage")

_MAX_BACKOFF = 30.0
_RESTART_AFTER = 1.0


class WriterTask:
    def __init__(self, recover: Callable[[], Awaitable[object]],
                 flush: Callable[[], Awaitable[None]], pending: Callable[[], int],
                 interval: float) -> None:
        self._recover = recover
        self._flush = flush
        self._pending = pending
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failing = False  # the last flush failed: wait out the backoff, no early wake

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="usage-writer")
        self._task.add_done_callback(self._ended)

    def wake(self) -> None:
        self._wake.set()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closing:
            return
        error = task.exception()
        logger.error("usage: the writer stopped on an unexpected error (%r); restarting it in "
                     "1 s", error, exc_info=error)
        asyncio.get_running_loop().call_later(_RESTART_AFTER, self._restart)

    def _restart(self) -> None:
        if not self._closing:
            self.start()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def run(self) -> None:
        backoff = self._interval
        while not self._closing:
            try:
                await self._recover()
                break
            except (SQLAlchemyError, OSError) as exc:
                backoff = min(backoff * 2, _MAX_BACKOFF)
                logger.warning("usage: cannot store recovered journals yet (%s); retry in "
                               "%.1fs", type(exc).__name__, backoff)
                await self._pause(backoff)
        backoff = self._interval
        while not self._closing:
            await self._pause(backoff)
            try:
                await self._flush()
                self.failing = False
                backoff = self._interval
            except (SQLAlchemyError, OSError) as exc:
                self.failing = True
                backoff = min(backoff * 2, _MAX_BACKOFF)
                logger.warning("usage: database unavailable (%s); %d events buffered, retry in "
                               "%.1fs", type(exc).__name__, self._pending(), backoff)

    async def stop(self, deadline: float) -> None:
        """End the task after the write in progress, or cancel it past `deadline` seconds (a
        database that does not answer)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=deadline)
            if not done:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
