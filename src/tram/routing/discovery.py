"""Replicas found by DNS: `discover: dns` on an upstream whose host names several engines (a
Kubernetes headless Service gives one address per ready pod). Every address becomes a replica
of its own, so the routing policies, health checks and circuits see each engine; the list is
re-read every `discover_interval` seconds, so scaling a model's Deployment is all it takes.

A failed lookup keeps the last known replicas (an engine does not vanish because the resolver
hiccuped); an empty answer removes them (every pod is gone or not ready).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from tram.config import UpstreamConfig
from tram.routing.registry import Registry, Replica

__all__ = ["Resolver", "discover_forever", "discover_once"]

logger = logging.getLogger("tram.routing")

# host, port → addresses (IPv4 or IPv6, as text)
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _at(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def discover_once(registry: Registry, resolve: Resolver, due: dict[str, float]) -> None:
    now = time.monotonic()
    for model in registry.models:
        default_name = (model.engine.served_name if model.engine else None) or model.name
        for upstream in model.upstreams:
            if upstream.discover != "dns" or due.get(upstream.url, 0.0) > now:
                continue
            due[upstream.url] = now + upstream.discover_interval
            await _refresh(registry, resolve, model.name, upstream, default_name)


async def _refresh(registry: Registry, resolve: Resolver, model: str, upstream: UpstreamConfig,
                   default_name: str) -> None:
    parts = urlsplit(upstream.url)
    try:
        addresses = await resolve(parts.hostname or "", parts.port or 80)
    except OSError as exc:
        logger.warning("discovery: %s did not resolve (%s); keeping %d replicas", parts.hostname,
                       exc, len(registry.discovered(model, upstream.url)))
        return
    known = {r.url: r for r in registry.discovered(model, upstream.url)}
    urls = [_at(upstream.url, address) for address in addresses]
    if urls == list(known):
        return
    replicas = []
    for url in urls:
        replica = known.get(url)
        if replica is None:
            replica = Replica.from_config(upstream, default_name)
            replica.url = url
        replicas.append(replica)
    logger.info("discovery: %s of %s → %d replicas", parts.hostname, model, len(replicas))
    registry.set_discovered(model, upstream.url, replicas)


async def discover_forever(registry: Registry, resolve: Resolver = system_resolver) -> None:
    due: dict[str, float] = {}
    while True:
        await discover_once(registry, resolve, due)
        await asyncio.sleep(1.0)
