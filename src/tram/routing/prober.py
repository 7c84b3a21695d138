"""Active health checks: GET <upstream>/models on every replica, each model at its own interval;
the answer also says how long a context the engine serves (vLLM's `max_model_len`, llama.cpp's
trained context), which `/v1/models` tells clients."""

from __future__ import annotations

import logging
import time

import anyio
import orjson

from tram.routing.registry import Registry, Replica
from tram.transport.upstream import UpstreamClient

__all__ = ["context_window", "probe_forever", "probe_once"]

logger = logging.getLogger("tram.health")


def context_window(models: bytes) -> int | None:
    """The context an engine's /models answer declares for its (first) model."""
    try:
        data = orjson.loads(models).get("data") or [{}]
    except (orjson.JSONDecodeError, AttributeError):
        return None
    card = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    meta = card.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    for value in (card.get("max_model_len"), meta.get("n_ctx"), meta.get("n_ctx_train")):
        if isinstance(value, int) and value > 0:
            return value
    return None


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
                        body = await client.get(r, "/models", limit_s)
                        ok = body is not None
                        if body is not None:
                            r.context_window = context_window(body) or r.context_window
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
