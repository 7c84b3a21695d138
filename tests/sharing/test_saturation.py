"""The engines' queue as a saturation signal, unit by unit: a reading counts only while fresh
(scraping may stop on a reload, or the engine stop answering it), a gateway with nothing of
its own in flight may still start one request, and a refused client is told when to come back
at the pace the queue drains."""

from __future__ import annotations

import asyncio
import time

import pytest

from tram.config import SharingConfig, parse_config
from tram.errors import ModelOverloaded
from tram.relay.queueing import Queues
from tram.routing.engine_load import scrape_once
from tram.routing.registry import ModelPool, Registry
from tram.sharing.gate import Gate

UPSTREAM = {"url": "http://127.0.0.1:9/v1"}


def _registry() -> Registry:
    config = parse_config({"models": [{"name": "m", "upstreams": [UPSTREAM],
                                       "routing": {"scrape_interval": 1.0}}]}, "test")
    return Registry.from_models(config.models)


def _report(pool: ModelPool, waiting: float, age: float) -> None:
    for replica in pool.replicas:
        replica.engine_waiting = waiting
        replica.engine_read_at = time.monotonic() - age


def test_a_stale_reading_does_not_saturate() -> None:
    registry = _registry()
    pool = registry.get("m")
    assert pool is not None
    _report(pool, 4, age=0.5)
    assert pool.saturated()
    _report(pool, 4, age=4.0)  # one missed round (1 s interval + 0.5 s timeout): still known
    assert pool.saturated()
    _report(pool, 4, age=4.6)  # three scrape rounds without a reading: unknown
    assert not pool.saturated()
    _report(pool, 0, age=0.1)
    assert not pool.saturated()


def test_a_saturated_model_still_lets_one_request_through() -> None:
    registry = _registry()
    queues = Queues(registry, SharingConfig())
    pool = registry.get("m")
    assert pool is not None
    assert queues.capacity("m") == float("inf")
    _report(pool, 3, age=0.1)  # others fill the engines; this gateway has nothing in flight
    assert queues.capacity("m") == 1
    _report(pool, 3, age=10)  # the reading went stale: no bound
    assert queues.capacity("m") == float("inf")


def test_retry_after_follows_how_fast_the_queue_drains() -> None:
    async def scenario() -> list[int]:
        gate = Gate("m", lambda: 1, SharingConfig().queue.model_copy(update={"max_queue": 3}))
        held = await gate.enter("a", 1.0, "interactive", 1.0)
        waiters = [asyncio.ensure_future(gate.enter("b", 1.0, "interactive", 1.0))
                   for _ in range(3)]
        await asyncio.sleep(0)
        told = [gate.retry_after()]  # nothing given back yet: a second a request ahead
        for _ in range(3):  # slots given back every 0.5 s
            await asyncio.sleep(0.5)
            gate.leave(held)
            held = await waiters.pop(0)
        for _ in range(3):
            waiters.append(asyncio.ensure_future(gate.enter("b", 1.0, "interactive", 1.0)))
        await asyncio.sleep(0)
        with pytest.raises(ModelOverloaded) as full:
            await gate.enter("c", 1.0, "interactive", 1.0)
        told.append(full.value.retry_after)
        for waiter in waiters:
            waiter.cancel()
        return told

    before, after = asyncio.run(scenario())
    assert before == 4  # (3 waiting + 1) × 1 s
    assert after == 2  # (3 + 1) × ~0.5 s, rounded up


class _ScriptedMetrics:
    """Stands in for UpstreamClient.get: each scrape answers the next body in the script
    (None: no answer within the timeout)."""

    def __init__(self, *bodies: bytes | None) -> None:
        self.bodies = list(bodies)

    async def get(self, replica: object, path: str, limit_s: float,
                  at_root: bool = False) -> bytes | None:
        return self.bodies.pop(0)


def test_one_missed_scrape_keeps_the_queue_an_engine_reported() -> None:
    config = parse_config({"models": [{"name": "m", "upstreams": [UPSTREAM, UPSTREAM],
                                       "routing": {"scrape_interval": 0.2,
                                                   "scrape_timeout": 0.2}}]}, "test")
    registry = Registry.from_models(config.models)
    pool = registry.get("m")
    assert pool is not None
    busy = b'vllm:num_requests_waiting{m="x"} 50\n'
    client = _ScriptedMetrics(busy, busy, None, None)
    seen: dict[int, float] = {}
    asyncio.run(scrape_once(registry, client, seen))  # type: ignore[arg-type]
    assert [r.engine_penalty for r in pool.replicas] == [50.0, 50.0]
    for replica in pool.replicas:  # a round and a half ago (0.4 s rounds): one missed
        seen[id(replica)] = replica.engine_read_at = time.monotonic() - 0.6
    asyncio.run(scrape_once(registry, client, seen))  # type: ignore[arg-type]
    assert [r.engine_penalty for r in pool.replicas] == [50.0, 50.0]
    assert pool.saturated()
    for replica in pool.replicas:  # three rounds without an answer: unknown
        seen[id(replica)] = replica.engine_read_at = time.monotonic() - 1.3
    asyncio.run(scrape_once(registry, _ScriptedMetrics(None, None), seen))  # type: ignore[arg-type]
    assert [r.engine_penalty for r in pool.replicas] == [0.0, 0.0]
    assert not pool.saturated()
