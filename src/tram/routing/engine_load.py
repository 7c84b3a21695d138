"""Engine load, read from each replica's `/metrics` in the background (cache_aware routing).

The gateway's own in-flight counts see only its own requests; with several gateways (or
`--workers N`) an engine's waiting queue and KV usage say how busy it is with everyone's. Each
replica of a model that routes by cache (`routing.policy` auto or cache_aware, several
replicas, `scrape_metrics`) is scraped every `scrape_interval` seconds, each scrape bounded by
`scrape_timeout`; the result is one number on the replica, `engine_penalty` (waiting
requests × `queue_weight` + KV pressure above 80% × `kv_weight`), which routing reads without
any I/O (not the running count: see `Replica.update_load`). A
replica whose /metrics is missing, slow or unparsable has no penalty once its last reading is
three scrape rounds old (`RoutingConfig.reading_lifetime`): routing is never slowed or
blocked by a scrape.

vLLM's names (`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`) and llama.cpp's
(`llamacpp:requests_deferred`, `llamacpp:kv_cache_usage_ratio`) are read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio

from tram.config import RoutingConfig
from tram.routing.registry import ModelPool, Registry, Replica
from tram.transport.upstream import UpstreamClient

__all__ = ["EngineLoad", "parse_metrics", "penalty", "scrape_forever", "scrape_once"]

logger = logging.getLogger("tram.routing")

_WAITING = (b"vllm:num_requests_waiting", b"llamacpp:requests_deferred")
_KV = (b"vllm:kv_cache_usage_perc", b"vllm:gpu_cache_usage_perc", b"llamacpp:kv_cache_usage_ratio")
_RUNNING = (b"vllm:num_requests_running", b"llamacpp:requests_processing")


@dataclass(frozen=True)
class EngineLoad:
    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0  # 0..1


def parse_metrics(text: bytes) -> EngineLoad | None:
    """The load figures of a Prometheus exposition (summed over label sets); None if it has
    none of them (not an engine's /metrics)."""
    found: dict[str, float] = {}
    for line in text.split(b"\n"):
        if not line or line[0] == 35:  # '#'
            continue
        name = line.split(b"{", 1)[0].split(b" ", 1)[0]
        kind = "waiting" if name in _WAITING else "kv" if name in _KV else \
            "running" if name in _RUNNING else None
        if kind is None:
            continue
        try:
            value = float(line.rsplit(b" ", 1)[1])
        except (IndexError, ValueError):
            continue
        found[kind] = max(found.get(kind, 0.0), value) if kind == "kv" \
            else found.get(kind, 0.0) + value
    if not found:
        return None
    return EngineLoad(found.get("waiting", 0.0), found.get("running", 0.0),
                      min(max(found.get("kv", 0.0), 0.0), 1.0))


def penalty(load: EngineLoad, config: RoutingConfig) -> float:
    """An engine's load as requests' worth, added to the gateway's own in-flight count."""
    pressure = max(0.0, (load.kv_usage - 0.8) / 0.2)
    return config.queue_weight * load.waiting + config.kv_weight * pressure


def _scraped(pool: ModelPool) -> bool:
    routing = pool.config.routing
    return routing.scrape_metrics and (pool.scrape_load or (
        routing.policy in ("auto", "cache_aware") and len(pool.replicas) > 1))


def _targets(registry: Registry) -> list[tuple[Replica, RoutingConfig]]:
    return [(replica, pool.config.routing) for pool in registry if _scraped(pool)
            for replica in pool.replicas]


async def _scrape(replica: Replica, config: RoutingConfig, client: UpstreamClient,
                  seen: dict[int, float]) -> None:
    """One replica's reading (`seen`: when each replica last answered, by id)."""
    asked = time.monotonic()
    body = await client.get(replica, "/metrics", config.scrape_timeout, at_root=True)
    load = parse_metrics(body) if body is not None else None
    if load is not None:
        replica.engine_penalty = penalty(load, config)
        replica.engine_waiting = load.waiting
        # As of when it was asked: a prompt sent while the answer was on its way may not be
        # in it (routing/prefix.py counts what was sent after a reading).
        replica.engine_read_at = seen[id(replica)] = asked
        replica.update_load()
    elif asked - seen.get(id(replica), 0.0) > config.reading_lifetime:
        # Unknown: the gateway's own count alone.
        replica.engine_penalty = replica.engine_waiting = 0.0
        replica.update_load()


async def scrape_once(registry: Registry, client: UpstreamClient,
                      seen: dict[int, float]) -> None:
    """Scrape every replica of the pools that read their engines' load, once."""
    async with anyio.create_task_group() as group:
        for replica, config in _targets(registry):
            group.start_soon(_scrape, replica, config, client, seen)


async def scrape_forever(registry: Registry, client: UpstreamClient) -> None:
    """Every replica at the shortest `scrape_interval` of the scraped models, each on its
    own: a replica whose /metrics hangs (until its timeout) delays no other's reading, and is
    not asked again while a scrape of it is still out."""
    seen: dict[int, float] = {}
    out: set[int] = set()

    async def scrape(replica: Replica, config: RoutingConfig) -> None:
        try:
            await _scrape(replica, config, client, seen)
        except Exception:  # one replica's odd failure must not end every replica's scraping
            logger.exception("engine load: scraping %s failed", replica.url)
        finally:
            out.discard(id(replica))

    async with anyio.create_task_group() as group:
        while True:
            targets = _targets(registry)
            for replica, config in targets:
                if id(replica) not in out:
                    out.add(id(replica))
                    group.start_soon(scrape, replica, config)
            await anyio.sleep(min((config.scrape_interval for _, config in targets),
                                  default=1.0))
