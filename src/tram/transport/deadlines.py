"""Timeouts for the hot path, checked by one shared ticker instead of a timer each.

`asyncio.timeout()` schedules a loop timer per use; under uvloop each is a libuv timer created,
started and stopped, and the request path used two per request and one per streamed chunk
(~9% of the gateway's CPU per request in the profile). Here each use only joins a set; one
ticker, running only while something waits, cancels the tasks whose deadline passed, then the
context manager turns that cancellation into `TimeoutError`, exactly as `asyncio.timeout` does.
Deadlines fire up to `resolution` late, which is nothing next to timeouts of seconds. Times are
on the event loop's clock, which is `time.monotonic()`'s (asyncio's loop.time() is that
function; uvloop's is libuv's monotonic clock, the same one in milliseconds), so a caller that
already read `time.monotonic()` may arm a deadline with it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol

__all__ = ["Deadline", "Expiring", "Ticker", "Watch"]


class Expiring(Protocol):
    """What the ticker watches: a time, and what to do once it has passed."""

    when: float

    def expire(self) -> None: ...


class Watch:
    """One deadline armed again for each wait of a loop (a stream's reads from its engine):
    the task and its cancel count are taken once, and each wait costs two set operations, not
    an async context manager (an eighth of a relayed chunk's cost; docs/decisions.md).

        watch.arm(time.monotonic() + seconds)
        try:
            data = await read()
        except asyncio.CancelledError:
            if not watch.timed_out():
                raise
            ...  # the wait timed out
        finally:
            watch.disarm()
    """

    __slots__ = ("_cancelling", "_expired", "_task", "_ticker", "when")

    def __init__(self, ticker: Ticker, when: float = 0.0) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline must be made inside a task")
        self._ticker = ticker
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self.when = when

    def arm(self, when: float) -> None:
        self.when = when
        self._ticker.add(self)

    def disarm(self) -> None:
        self._ticker.discard(self)

    def expire(self) -> None:
        if not self._expired:
            self._expired = True
            self._task.cancel()

    def timed_out(self) -> bool:
        """After a CancelledError in an armed wait: whether this watch caused it (its
        cancellation is then taken back, as `asyncio.timeout` does)."""
        return self._expired and self._task.uncancel() <= self._cancelling


class Deadline(Watch):
    """`async with ticker.timeout(seconds):` a Watch armed once, for one block; its
    expiry's cancellation turned into TimeoutError as `asyncio.timeout` does. On a request's
    hot path, `ticker.start(seconds)` and `ticker.discard(it)` around the await instead: the
    same deadline without an async context manager's calls.

        deadline = ticker.start(seconds)
        try:
            return await work()
        except asyncio.CancelledError:
            if deadline.timed_out():
                ...  # raise the timeout's own error
            raise
        finally:
            ticker.discard(deadline)
    """

    __slots__ = ()

    async def __aenter__(self) -> Deadline:
        self.arm(self.when)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self.disarm()
        if self.timed_out() and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


class Ticker:
    """Owns the deadlines of one event loop's requests."""

    def __init__(self, resolution: float = 0.05) -> None:
        self._resolution = resolution
        self._waiting: set[Expiring] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def timeout(self, delay: float) -> Deadline:
        """`async with ticker.timeout(seconds):` like `asyncio.timeout(seconds)`."""
        return Deadline(self, asyncio.get_running_loop().time() + delay)

    def start(self, delay: float) -> Deadline:
        """A deadline `delay` seconds from now, armed (see `Deadline`)."""
        loop = asyncio.get_running_loop()
        deadline = Deadline(self, loop.time() + delay)
        self._waiting.add(deadline)
        if self._handle is None or self._loop is not loop:
            self._loop = loop
            self._handle = loop.call_later(self._resolution, self._tick)
        return deadline

    def add(self, deadline: Expiring, after: float | None = None) -> None:
        """Watch `deadline` (its `when` set `after` seconds from now, if given)."""
        loop = asyncio.get_running_loop()
        if after is not None:
            deadline.when = loop.time() + after
        self._waiting.add(deadline)
        if self._handle is None or self._loop is not loop:  # (a new loop: a test's next app run)
            self._loop = loop
            self._handle = loop.call_later(self._resolution, self._tick)

    def discard(self, deadline: Expiring) -> None:
        self._waiting.discard(deadline)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._handle = None
        now = loop.time()
        for deadline in [d for d in self._waiting if d.when <= now]:
            self._waiting.discard(deadline)
            deadline.expire()
        if self._waiting:
            self._handle = loop.call_later(self._resolution, self._tick)
