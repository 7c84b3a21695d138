"""cancel_on_disconnect: a client that leaves stops the work; a quick answer costs no watcher."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tram.api.streaming import WATCH_AFTER, cancel_on_disconnect
from tram.requestlog import RequestRecord
from tram.transport.deadlines import Ticker


def _record() -> RequestRecord:
    return RequestRecord("r", "POST", "/v1/chat/completions")


async def test_a_client_that_leaves_at_once_stops_the_work_within_a_tick() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    stopped = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()
        return "answer"

    record = _record()
    started = time.monotonic()
    assert await cancel_on_disconnect(receive, work(), record, Ticker()) is None
    assert stopped.is_set() and record.client_disconnected
    assert time.monotonic() - started < WATCH_AFTER + 0.5


async def test_a_quick_answer_never_starts_a_watcher() -> None:
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def work() -> str:
        await asyncio.sleep(0.001)
        return "answer"

    ticker = Ticker()
    record = _record()
    assert await cancel_on_disconnect(receive, work(), record, ticker) == "answer"
    await asyncio.sleep(WATCH_AFTER * 3)  # past the time a watcher would have started
    assert calls == 0 and not record.client_disconnected


async def test_a_slow_answer_to_a_client_that_stays_is_not_cancelled() -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def work() -> str:
        await asyncio.sleep(WATCH_AFTER * 4)
        return "answer"

    assert await cancel_on_disconnect(receive, work(), _record(), Ticker()) == "answer"
    await asyncio.sleep(0.01)  # a cancelled task ends at the loop's next turn
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
                and "_watch" in repr(t)]  # the watcher is gone with the request
