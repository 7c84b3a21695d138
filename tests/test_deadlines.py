"""The shared-ticker timeouts behave like asyncio.timeout: TimeoutError when the deadline
passes, nothing otherwise, and a real cancellation stays a cancellation; the engine client's
own deadlines (an answer read whole or one that stops midway) keep their messages."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from tram.config import Timeouts
from tram.errors import EngineTimeout
from tram.transport.deadlines import Ticker
from tram.transport.upstream import UpstreamClient


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


async def test_a_started_deadline_cancels_and_says_it_was_the_cause() -> None:
    ticker = Ticker(resolution=0.01)
    deadline = ticker.start(0.03)
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        assert deadline.timed_out()
    else:
        raise AssertionError("the deadline did not fire")
    finally:
        ticker.discard(deadline)
    deadline = ticker.start(5)
    await asyncio.sleep(0.02)
    ticker.discard(deadline)
    assert not deadline.timed_out() and not ticker._waiting


@dataclass
class _Engine:
    url: str
    api_key: str | None = None
    ca_file: str | None = None
    socket: str | None = None


async def _engine_sending(parts: list[bytes]) -> tuple[asyncio.Server, _Engine]:
    """A one-route engine that writes `parts` (its answer, headers first), then holds on."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            size = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(size)
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, _Engine(f"http://127.0.0.1:{port}/v1")


async def test_an_answer_that_arrived_whole_is_read_and_its_connection_reused() -> None:
    server, engine = await _engine_sending([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"])
    client = UpstreamClient()
    try:
        for _ in range(2):
            response = await client.send(engine, "/x", b"{}", "r", Timeouts(), 5.0)
            await asyncio.sleep(0.05)  # the body too has arrived
            assert await client.read_body(response, 5.0) == b"hello"
            response.close()
        assert len(client._pool._idle[("127.0.0.1", server.sockets[0].getsockname()[1],
                                       None)]) == 1
    finally:
        await client.aclose()
        server.close()


async def test_an_answer_that_stops_midway_times_out_with_its_own_message() -> None:
    server, engine = await _engine_sending(
        [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", b"hello"])
    client = UpstreamClient()
    try:
        response = await client.send(engine, "/x", b"{}", "r", Timeouts(), 5.0)
        started = time.monotonic()
        with pytest.raises(EngineTimeout, match=r"did not finish its answer within 0\.2s"):
            await client.read_body(response, 0.2)
        assert 0.2 <= time.monotonic() - started < 1.0
        response.close()
    finally:
        await client.aclose()
        server.close()
