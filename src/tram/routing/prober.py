"""Active health checks: GET <upstream>/models on every replica, each model at its own interval."""

from __future__ import annotations

import logging
import time

import anyio

from tram.routing.registry import Registry, Replica
from tram.transport.upstream import UpstreamClient

__all__ = ["probe_forever", "probe_once"]

logger = logging.getLogger("tram.health")


async def probe_once(registry: Registry, client: UpstreamClient,
                     due: dict[str, float]) -> None:
    """Probe the replicas of every model whose interval has come (`due`: model → next time)."""
    now = time.monotonic()
    async with anyio.create_task_group() as group:
        for pool in registry:
            if due.get(pool.name, 0.0) > now:
                continue
            due[pool.name] = now + pool.config.health.probe_interval
            for replica in pool.replicas:
                if replica.available and replica.health is not None:

                    async def run(r: Replica = replica, limit_s: float =
                                  pool.config.health.probe_timeout, name: str = pool.name) -> None:
                        ok = await client.probe(r, limit_s)
                        before = r.health.state if r.health else None
                        if r.health is not None:
                            r.health.record_probe(ok)
                            if r.health.state != before:
                                logger.warning("replica %s of %s is now %s", r.url, name,
                                               r.health.state.value)

                    group.start_soon(run)


async def probe_forever(registry: Registry, client: UpstreamClient) -> None:
    due: dict[str, float] = {}
    while True:
        await probe_once(registry, client, due)
        await anyio.sleep(0.25)
