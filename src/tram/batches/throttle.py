"""How many of a model's batch lines a gateway process runs at once: batch work fills capacity
nobody else is using, and gives it back as soon as somebody is.

`Throttle` is the rule, per model: start at `min_concurrency`; one more line every
`adjust_interval` while the runner uses all it may, has more to run, and the model is idle
(no interactive request waiting, the engines' own queue empty); one less while the engines
queue only batch lines (they are full: more would wait there, in front of whoever comes next);
back to `min_concurrency` at once when interactive requests wait. Lines already running finish
(an engine with priority scheduling puts them behind interactive ones).

`LoadSignal` is what the rule reads, one small interface so that the gateway's own queue can
feed it (`ModelLoad.interactive_waiting`); `GatewayLoad` is the signal this process has today:
its own interactive requests in flight (`ModelPool.in_flight` less its batch lines) and each
engine's waiting count from its `/metrics` (routing/engine_load.py's reading), scraped while
the model has batch work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import anyio

from tram.routing.engine_load import parse_metrics
from tram.routing.registry import Registry, Replica
from tram.transport.upstream import UpstreamClient

__all__ = ["GatewayLoad", "LoadSignal", "ModelLoad", "Throttle"]

logger = logging.getLogger("tram.batches")


@dataclass(frozen=True)
class ModelLoad:
    """What the runner reads about a model before it starts more of its lines."""

    interactive_waiting: int = 0  # interactive requests waiting in the gateway for the model
    interactive_running: int = 0  # interactive requests in flight from this process
    engine_waiting: float = 0.0  # requests its engines report waiting (anyone's, batch too)
    available: bool = True  # a replica takes traffic: lines started now can run


class LoadSignal(Protocol):
    def load(self, model: str) -> ModelLoad:
        """The model's load now (no I/O: called before every claim)."""

    def watch(self, models: Collection[str]) -> None:
        """The models that have batch work now (the signal may watch only those)."""


class Throttle:
    """One model's limit of lines in flight in this process."""

    def __init__(self, floor: int, ceiling: int, interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.floor, self.ceiling, self.interval = floor, ceiling, interval
        self.limit = floor
        self._clock = clock
        self._changed = clock()

    def room(self, load: ModelLoad, running: int, waiting: bool = True) -> int:
        """Adjust the limit to the load; how many more lines may start now. `running`: this
        process's lines of the model in flight; `waiting`: whether more wait to run."""
        now = self._clock()
        if not load.available:
            return 0  # nothing could run them: leave them for later (or another process)
        if load.interactive_waiting > 0 \
                or (load.engine_waiting > 0 and load.interactive_running > 0):
            self.limit, self._changed = self.floor, now
        elif now - self._changed >= self.interval:
            if load.engine_waiting > 0:
                self.limit, self._changed = max(self.floor, min(self.limit, running) - 1), now
            elif running >= self.limit and waiting and self.limit < self.ceiling:
                self.limit, self._changed = self.limit + 1, now
        return max(0, self.limit - running)


class GatewayLoad:
    """The load this process can see: its own requests, and its engines' `/metrics`."""

    def __init__(self, registry: Registry, upstream: UpstreamClient,
                 batch_running: Mapping[str, int], interval: float = 1.0) -> None:
        self._registry = registry
        self._upstream = upstream
        self._batch_running = batch_running
        self._interval = interval
        self._watched: frozenset[str] = frozenset()
        self._waiting: dict[int, tuple[float, float]] = {}  # replica id → (waiting, when read)

    def watch(self, models: Collection[str]) -> None:
        self._watched = frozenset(models)

    def load(self, model: str) -> ModelLoad:
        pool = self._registry.get(model)
        if pool is None:
            return ModelLoad()  # an unknown model: its lines fail at once, as they should
        now = time.monotonic()
        waiting = 0.0
        for replica in pool.replicas:
            found = self._waiting.get(id(replica))
            if found is not None and now - found[1] < 3 * self._interval:
                waiting += found[0]
        return ModelLoad(
            interactive_running=max(0, pool.in_flight - self._batch_running.get(model, 0)),
            engine_waiting=waiting,
            available=any(replica.takes_traffic() for replica in pool.replicas))

    async def run(self) -> None:
        """Scrape the watched models' engines every `interval` (each scrape bounded by it)."""
        while True:
            replicas = [replica for model in self._watched
                        if (pool := self._registry.get(model)) is not None
                        for replica in pool.replicas]
            stale = time.monotonic() - 3 * self._interval
            self._waiting = {key: seen for key, seen in self._waiting.items() if seen[1] > stale}
            if replicas:
                with anyio.move_on_after(self._interval):
                    async with anyio.create_task_group() as group:
                        for replica in replicas:
                            group.start_soon(self._scrape, replica)
            await anyio.sleep(self._interval)

    async def _scrape(self, replica: Replica) -> None:
        try:
            body = await self._upstream.get(replica, "/metrics", self._interval, at_root=True)
            load = parse_metrics(body) if body is not None else None
        except Exception:  # a reading is never worth the gateway: unknown, then
            logger.exception("batches: reading %s/metrics failed unexpectedly", replica.url)
            return
        if load is not None:
            self._waiting[id(replica)] = (load.waiting, time.monotonic())
