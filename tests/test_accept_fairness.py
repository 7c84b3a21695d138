"""New connections are accepted promptly while the gateway is saturated (server/loop.py).

uvloop's libuv accepts one connection per turn of the event loop; when a turn serves many busy
connections, the k-th of many new connections waited k turns for its first request (seconds
at c=256). Measured here without a clock: how many answers the busy connections received
between a new connection's request and its answer, i.e. how many turns it waited. The plain
uvloop loop is run as the control, which shows the starvation the test would catch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BUSY, NEW = 24, 40
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


async def _answer(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(2)


async def _turns_waited(port: int) -> float:
    """Busy answers seen while the slowest of NEW fresh connections waited, per busy
    connection (≈ turns of the server's loop)."""
    served = 0
    stop, warm = asyncio.Event(), asyncio.Event()

    async def busy() -> None:
        nonlocal served
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not stop.is_set():
            writer.write(REQUEST)
            await _answer(reader)
            served += 1
            if served >= BUSY * 5:  # every busy connection is being served
                warm.set()
        writer.close()

    async def fresh() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        before = served
        writer.write(REQUEST)
        await _answer(reader)
        writer.close()
        return served - before

    workers = [asyncio.create_task(busy()) for _ in range(BUSY)]
    await warm.wait()
    waited = await asyncio.gather(*(fresh() for _ in range(NEW)))
    stop.set()
    await asyncio.gather(*workers)
    return max(waited) / BUSY


def _serve(loop: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.support.busy_server", str(port),
                                loop], cwd=ROOT)
    return process, port


async def _wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("the busy server did not start")


@pytest.mark.parametrize(("loop", "fair"), [("tram.server.loop:new_event_loop", True),
                                            ("uvloop", False)])
def test_new_connections_are_not_starved_by_busy_ones(loop: str, fair: bool) -> None:
    process, port = _serve(loop)
    try:
        async def measure() -> float:
            await _wait_listening(port)
            return await _turns_waited(port)

        turns = asyncio.run(measure())
    finally:
        process.terminate()
        process.wait(10)
    if fair:
        assert turns < 10, f"the last new connection waited ~{turns:.0f} turns of the loop"
    else:  # the control: one accept per turn, so the last of 40 waits ~40 turns
        assert turns > 20, f"plain uvloop accepted fast here (~{turns:.0f} turns)"
