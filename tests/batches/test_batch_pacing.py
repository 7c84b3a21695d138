"""Batch lines fill idle capacity and give it back: the rule (`Throttle`) on its own, and the
runner on a live gateway in front of an engine with a few slots that reports its queue on
/metrics as vLLM does (a fault-injection engine: a real one cannot be made to queue on cue)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import MASTER_KEY
from tests.support.batches import chat_lines, start_batch, wait_batch
from tests.support.servers import serve_app
from tram.app import create_app
from tram.batches.throttle import ModelLoad, Throttle
from tram.config import Settings, parse_config

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
IDLE = ModelLoad()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_rises_one_step_a_interval_while_idle_and_saturated() -> None:
    clock = Clock()
    throttle = Throttle(1, 4, 0.5, clock)
    assert throttle.room(IDLE, 0, True) == 1
    clock.now = 0.4
    assert throttle.room(IDLE, 1, True) == 0  # not a whole interval yet
    rooms = []
    for step in range(1, 6):
        clock.now = step * 0.5
        rooms.append(throttle.room(IDLE, throttle.limit, True))
    assert rooms == [1, 1, 1, 0, 0] and throttle.limit == 4  # up to the ceiling
    held = Throttle(1, 4, 0.5, clock)
    clock.now += 1
    assert held.room(IDLE, 0, True) == 1 and held.limit == 1  # not using what it has: no rise
    clock.now += 1
    assert held.room(IDLE, 1, False) == 0 and held.limit == 1  # nothing more to run: no rise


def test_the_limit_falls_to_the_floor_at_once_when_interactive_requests_wait() -> None:
    clock = Clock()
    for load in (ModelLoad(interactive_waiting=1),
                 ModelLoad(engine_waiting=2, interactive_running=1)):
        throttle = Throttle(2, 8, 0.5, clock)
        throttle.limit = 8
        assert throttle.room(load, 8, True) == 0 and throttle.limit == 2  # no interval to wait


def test_an_engine_queueing_batch_lines_only_takes_one_less_a_interval() -> None:
    clock = Clock()
    throttle = Throttle(1, 8, 0.5, clock)
    throttle.limit = 6
    queued = ModelLoad(engine_waiting=3)
    limits = []
    for step in range(1, 8):
        clock.now = step * 0.5
        throttle.room(queued, throttle.limit, True)
        limits.append(throttle.limit)
    assert limits == [5, 4, 3, 2, 1, 1, 1]
    assert Throttle(1, 8, 0.5, clock).room(ModelLoad(available=False), 0, True) == 0


class SlotEngine:
    """`slots` requests answered at once, each after `seconds`; the rest wait, and
    /metrics says how many (vLLM's `vllm:num_requests_waiting`). Counts the batch lines and the
    interactive requests running at each moment."""

    def __init__(self, slots: int, seconds: float) -> None:
        self.slots, self.seconds = slots, seconds
        self.waiting = 0
        self.running = {"batch": 0, "interactive": 0}
        self.peak_batch = 0
        self.interactive_waits: list[float] = []
        self._gate: asyncio.Semaphore | None = None

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = await request.json()
            kind = "interactive" if body["messages"][0]["content"] == "now" else "batch"
            if self._gate is None:
                self._gate = asyncio.Semaphore(self.slots)
            arrived = time.monotonic()
            self.waiting += 1
            async with self._gate:
                self.waiting -= 1
                if kind == "interactive":
                    self.interactive_waits.append(time.monotonic() - arrived)
                self.running[kind] += 1
                self.peak_batch = max(self.peak_batch, self.running["batch"])
                await asyncio.sleep(self.seconds)
                self.running[kind] -= 1
            return JSONResponse({"id": "x", "object": "chat.completion", "model": "m",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": "ok"}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                           "total_tokens": 2}})

        async def metrics(request: Request) -> Response:
            return Response(f"vllm:num_requests_waiting {self.waiting}\n"
                            f"vllm:num_requests_running {sum(self.running.values())}\n")

        async def models(request: Request) -> Response:  # the gateway's health probe
            return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model"}]})

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                                 Route("/v1/models", models), Route("/metrics", metrics)])


@pytest.fixture
def paced(tmp_path: Path) -> Iterator[tuple[str, SlotEngine, Any]]:
    engine = SlotEngine(slots=3, seconds=0.3)
    with serve_app(engine.app()) as engine_url:
        settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None,
                            data_dir=tmp_path / "data")
        app = create_app(settings, parse_config({
            "models": [{"name": "m", "upstreams": [{"url": engine_url + "/v1"}]}],
            "batches": {"poll_interval": 0.2, "adjust_interval": 0.1, "max_concurrency": 12}},
            "t"))
        with serve_app(app) as url:
            yield url, engine, app.state


def test_batch_lines_fill_idle_slots_and_give_them_back_to_interactive_requests(
        paced: tuple[str, SlotEngine, Any]) -> None:
    url, engine, state = paced
    runner = state.batch_runner
    batch = start_batch(url, AUTH, chat_lines(80, "m"))
    deadline = time.monotonic() + 20
    while engine.peak_batch < engine.slots and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.peak_batch == engine.slots  # the idle engine filled
    assert runner.limit("m") <= engine.slots + 2  # and not flooded: its queue holds it back
    answers: list[httpx.Response] = []

    def interactive() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(8):
                answers.append(client.post(url + "/v1/chat/completions", headers=AUTH, json={
                    "model": "m", "messages": [{"role": "user", "content": "now"}]}))

    users = threading.Thread(target=interactive)
    users.start()
    limits = []
    while users.is_alive():
        limits.append(runner.limit("m"))
        time.sleep(0.02)
    done = wait_batch(url, AUTH, batch["id"], timeout=60)
    # Back to the floor while interactive requests queued (seen on the engine's /metrics,
    # read every 0.4 s here), and up again when they did not.
    assert min(limits) == 1, limits
    assert [answer.status_code for answer in answers] == [200] * 8
    # An interactive request waits for a line in flight at most (one line's time, 0.3 s),
    # not for the batch's queue.
    assert max(engine.interactive_waits) < 0.3 * 2 + 0.5
    assert done["request_counts"]["completed"] == 80


def test_an_idle_runner_looks_for_work_with_one_read_and_finds_a_new_batch(
        paced: tuple[str, SlotEngine, Any]) -> None:
    url, _, state = paced
    statements: list[str] = []

    def seen(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "batch" in statement:
            statements.append(" ".join(statement.split()).upper())

    database = state.database.engine.sync_engine
    event.listen(database, "before_cursor_execute", seen)
    try:
        time.sleep(1.5)  # some seven sweeps, with no batch in the database
        idle = list(statements)
        batch = start_batch(url, AUTH, chat_lines(6, "m"))
        assert wait_batch(url, AUTH, batch["id"], timeout=20)["request_counts"]["completed"] == 6
    finally:
        event.remove(database, "before_cursor_execute", seen)
    # One read a sweep, each the indexed look for an active batch: no scan for finished ones
    # (NOT EXISTS), no write.
    assert 4 <= len(idle) <= 10, idle
    assert all(statement.startswith("SELECT BATCHES.ID FROM BATCHES WHERE BATCHES.STATUS IN")
               and "LIMIT" in statement and "EXISTS" not in statement
               for statement in idle), idle
    assert any(statement.startswith("UPDATE") for statement in statements[len(idle):])
