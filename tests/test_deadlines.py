"""The shared-ticker timeouts behave like asyncio.timeout: TimeoutError when the deadline
passes, nothing otherwise, and a real cancellation stays a cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from tram.transport.deadlines import Ticker


async def test_a_passed_deadline_raises_timeout_error_soon_after() -> None:
    ticker = Ticker(resolution=0.01)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with ticker.timeout(0.05):
            await asyncio.sleep(5)
    assert 0.05 <= time.monotonic() - started < 0.5


async def test_work_done_in_time_is_untouched_and_the_ticker_stops() -> None:
    ticker = Ticker(resolution=0.01)
    async with ticker.timeout(1):
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    assert ticker._handle is None and not ticker._waiting  # no wake-ups while nothing waits


async def test_an_outside_cancellation_is_not_turned_into_a_timeout() -> None:
    ticker = Ticker(resolution=0.01)

    async def waits() -> None:
        async with ticker.timeout(10):
            await asyncio.sleep(10)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_deadlines_many_tasks() -> None:
    ticker = Ticker(resolution=0.01)

    async def one(expire: bool) -> str:
        try:
            async with ticker.timeout(5), ticker.timeout(0.03 if expire else 5):
                await asyncio.sleep(0.1)
        except TimeoutError:
            return "timeout"
        return "done"

    results = await asyncio.gather(*(one(i % 2 == 0) for i in range(50)))
    assert results == ["timeout", "done"] * 25
