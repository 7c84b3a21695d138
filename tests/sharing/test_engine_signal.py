"""The engines' own queue as the saturation signal, on a live gateway: a model without
`max_in_flight` whose engine's /metrics reports `vllm:num_requests_waiting 3` (a scripted
saturated engine, a fault-injection stand-in: tests/support/held_engine.py) has its capacity
frozen at what the gateway had started; new requests wait in the gateway's fair queue and start
when one finishes, or when the engine's reading drops to 0."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.conftest import MASTER_KEY
from tests.sharing.test_gateway_queue import chat, new_key
from tests.sharing.test_sharing_view import held_gateway, model_view
from tests.support.held_engine import HeldEngine
from tests.support.servers import serve_app

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
FAST_SCRAPE = {"routing": {"scrape_interval": 0.1, "scrape_timeout": 0.5}}


def stays(engine: HeldEngine, count: int, seconds: float = 0.6) -> None:
    """No more than `count` requests reach the engine for a while."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert len(engine.arrived) == count, engine.arrived
        time.sleep(0.02)


def test_a_saturated_engine_holds_new_requests_in_the_gateway(tmp_path: Path) -> None:
    engine = HeldEngine()
    engine.waiting = 0
    with serve_app(engine.app) as engine_url, \
            held_gateway(tmp_path, engine_url, **FAST_SCRAPE) as url:
        _, other = new_key(url, "other")
        answers: dict[str, httpx.Response] = {}

        def send(headers: dict[str, str], tag: str) -> threading.Thread:
            thread = threading.Thread(
                target=lambda: answers.__setitem__(tag, chat(url, headers, tag)))
            thread.start()
            return thread

        threads = [send(AUTH, "first"), send(other, "second")]  # not saturated: both start
        engine.wait_arrived(2)
        assert model_view(url, lambda v: v["in_flight"] == 2)["capacity"] is None

        engine.waiting = 3  # every replica's engine now reports requests waiting
        saturated = model_view(url, lambda v: v["capacity"] is not None)
        assert saturated["capacity"] == 2 and saturated["bounded_by"] == "engine_queue"
        threads.append(send(other, "third"))
        model_view(url, lambda v: v["waiting"]["interactive"] == 1)
        stays(engine, 2)  # it waits in the gateway, not at the engine

        engine.release()  # one finishes: the next starts in its slot
        assert engine.wait_arrived(3)[2] == "third"
        threads.append(send(AUTH, "fourth"))
        model_view(url, lambda v: v["waiting"]["interactive"] == 1)
        stays(engine, 3)

        engine.waiting = 0  # the engines' queue drained: no bound, what waits starts
        assert engine.wait_arrived(4, timeout=5)[3] == "fourth"
        assert model_view(url, lambda v: v["capacity"] is None)["bounded_by"] is None
        assert len(engine.arrived) == 4 and engine.scrapes > 0
        engine.release(10)
        for thread in threads:
            thread.join(30)
        assert sorted(answers) == ["first", "fourth", "second", "third"]
        assert all(answer.status_code == 200 for answer in answers.values())
