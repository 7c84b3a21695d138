"""Engine-load scraping over time: each replica on its own schedule, so a replica whose
/metrics hangs delays no other's reading and is not asked again while it hangs."""

from __future__ import annotations

import asyncio
import collections

from tram.config import parse_config
from tram.routing.engine_load import scrape_forever
from tram.routing.registry import Registry, Replica

GOOD, HUNG = "http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"


class _HangingMetrics:
    """Stands in for UpstreamClient.get: HUNG never answers; GOOD reports a queue of 3."""

    def __init__(self) -> None:
        self.asked: collections.Counter[str] = collections.Counter()
        self.never = asyncio.Event()

    async def get(self, replica: Replica, path: str, limit_s: float,
                  at_root: bool = False) -> bytes | None:
        self.asked[replica.url] += 1
        if replica.url == HUNG:
            await self.never.wait()
        return b'vllm:num_requests_waiting{m="x"} 3\n'


def test_a_hanging_replica_delays_no_other_reading() -> None:
    config = parse_config({"models": [{"name": "m", "upstreams": [{"url": GOOD}, {"url": HUNG}],
                                       "routing": {"scrape_interval": 0.05}}]}, "test")
    registry = Registry.from_models(config.models)
    pool = registry.get("m")
    assert pool is not None
    good = next(r for r in pool.replicas if r.url == GOOD)
    client = _HangingMetrics()

    async def scenario() -> list[float]:
        task = asyncio.create_task(scrape_forever(registry, client))  # type: ignore[arg-type]
        readings = []
        for _ in range(6):
            await asyncio.sleep(0.1)
            readings.append(good.engine_read_at)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return readings

    readings = asyncio.run(scenario())
    assert client.asked[HUNG] == 1  # still out: not asked again
    assert client.asked[GOOD] >= 6
    assert good.engine_penalty == 3.0
    assert readings == sorted(readings) and len(set(readings)) == len(readings)  # kept fresh
