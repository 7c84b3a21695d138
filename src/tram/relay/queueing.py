"""Each model's fair queue (sharing/gate.py) as the service uses it: which queue, how much
the model takes at once, a request's class, weight and cost, and the slot released with the
engine hold.

Capacity: the model's `max_in_flight` if set; otherwise, where the engines' queue is read
(routing/engine_load.py), once every replica that takes traffic reports requests waiting, what
this gateway had started at that moment (no new start until one finishes or the engines'
queue drains); otherwise unbounded, and a request passes with no wait and no await.

A ticket's cost is the tokens it may occupy: its ceiling (max_tokens, else the model's
default, else 256) plus its prompt estimate / 12 (a prompt token costs the engine about a
twelfth of a decoded one: bench/fairqueue.py). It is estimated only when the model is
bounded; an unbounded one charges 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from tram.auth.principal import Principal
from tram.config import SharingConfig
from tram.meter import prompt_estimate
from tram.metrics import Metrics
from tram.relay.route import ModelRoute
from tram.requestlog import RequestRecord
from tram.routing.registry import ModelPool, Registry
from tram.sharing.classes import priority_of
from tram.sharing.fairqueue import Ticket
from tram.sharing.gate import Gate

__all__ = ["DEFAULT_CEILING", "Queues"]

DEFAULT_CEILING = 256


class Queues:
    """One gate per model name, kept across reloads (the registry's pools are rebuilt; a
    model's waiting requests are not)."""

    def __init__(self, registry: Registry, sharing: SharingConfig,
                 metrics: Metrics | None = None) -> None:
        self._registry = registry
        self._gates: dict[str, Gate] = {}
        self._frozen: dict[str, int] = {}
        self._metrics = metrics
        self.configure(sharing)
        if metrics is not None:
            metrics.registry.register(_Collector(self))

    def configure(self, sharing: SharingConfig) -> None:
        self.sharing = sharing
        # The class of the usual request (an interactive key's, not a batch line), read once.
        self._usual_class = self._class_of(sharing.priorities["interactive"])
        self._registry.scrape_load = sharing.queue.enabled and sharing.queue.engine_signal
        for pool in self._registry:
            pool.scrape_load = self._registry.scrape_load
        for gate in self._gates.values():
            gate.configure(sharing.queue)

    def __iter__(self) -> Iterator[Gate]:
        return iter(list(self._gates.values()))

    def gate(self, name: str) -> Gate:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = Gate(name, lambda: self.capacity(name),
                                            self.sharing.queue, *self._observers(name))
        return gate

    def _observers(self, name: str) -> tuple[Callable[[str, float], None] | None,
                                             Callable[[str], None] | None]:
        metrics = self._metrics
        if metrics is None:
            return None, None

        def waited(cls: str, seconds: float) -> None:
            metrics.queue_wait.labels(name, cls).observe(seconds)

        def refused(reason: str) -> None:
            metrics.rejected.labels(name, reason).inc()
        return waited, refused

    def find(self, name: str) -> Gate | None:
        """The model's queue if a request has made one (None: nothing ever waited or started
        through it)."""
        return self._gates.get(name)

    def capacity(self, name: str) -> float:
        """How many requests the model takes at once now (math.inf: no bound)."""
        pool = self._registry.get(name)
        return math.inf if pool is None else self._capacity_of(pool)

    def _capacity_of(self, pool: ModelPool) -> float:
        name = pool.name
        if pool.config.max_in_flight is not None:
            return pool.config.max_in_flight
        if pool.saturated():
            if name not in self._frozen:
                # At least one: with nothing of its own in flight, a gateway beside others
                # that keep the engines' queue full must still make progress.
                self._frozen[name] = max(self.gate(name).queue.started, 1)
            return self._frozen[name]
        self._frozen.pop(name, None)
        return math.inf

    def offer(self, pool: ModelPool, route: ModelRoute, principal: Principal,
              payload: Any, record: RequestRecord) -> tuple[Gate, Ticket] | None:
        """The request's ticket in its model's queue, started now or queued (then the gate's
        `wait` for it); None where there is no queue; ModelOverloaded (429) if it is full."""
        if not self.sharing.queue.enabled:
            return None
        gate = self._gates.get(pool.name) or self.gate(pool.name)
        if principal.priority == "interactive" and record.traffic != "batch":
            cls = self._usual_class
        else:
            cls = self._class_of(priority_of(principal.priority, record.traffic,
                                             self.sharing.priorities))
        weight = principal.weight or self.sharing.queue.weights.get(cls, 1.0)
        capacity = self._capacity_of(pool)  # read once: the queue is offered this reading
        # The cost orders what waits; an unbounded model with nothing waiting needs none
        # (unless keys are paced: their tickets all go through the queue's tags). The prompt
        # is estimated once, for the cost and the pacing both.
        keys_paced = gate.queue.key_prompts is not None
        ordered = gate.queue.size or capacity != math.inf or keys_paced
        paced = keys_paced or cls in gate.queue.class_prompts
        tokens = prompt_estimate(payload) if ordered or paced else 0
        cost = _cost(route, pool, payload, tokens) if ordered else 1.0
        prompt_seconds = tokens / self.sharing.queue.prompt_tokens_per_second if paced else 0.0
        return gate, gate.offer(principal.key_id, weight, cls, cost, capacity, prompt_seconds)

    def _class_of(self, number: int) -> str:
        return "batch" if number >= self.sharing.priorities["batch"] else "interactive"


class _Collector:
    """Each queue's state, read when /metrics is scraped."""

    def __init__(self, queues: Queues) -> None:
        self._queues = queues

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("tram_queue_depth", "Requests waiting in the model's fair "
                                  "queue, by class", labels=["model", "class"])
        admitted = CounterMetricFamily("tram_queue_admitted", "Requests started after waiting "
                                       "in the fair queue", labels=["model"])
        share = GaugeMetricFamily(
            "tram_fair_share_ratio", "A key's share of what its model started recently "
            "(estimated tokens, decayed over a minute) while the model was bounded or "
            "saturated; keys idle for several minutes are dropped", labels=["model", "key"])
        weight = GaugeMetricFamily("tram_fair_share_weight", "A key's weight in the model's "
                                   "fair queue, as last seen", labels=["model", "key"])
        now = time.monotonic()
        for gate in self._queues:
            by_class: dict[str, int] = {"interactive": 0, "batch": 0}
            for (cls, _), count in gate.queue.waiting().items():
                by_class[cls] = by_class.get(cls, 0) + count
            for cls, count in by_class.items():
                depth.add_metric([gate.model, cls], count)
            admitted.add_metric([gate.model], gate.queue.admitted)
            for entry in gate.shares(now):
                share.add_metric([gate.model, entry.key], entry.share)
                weight.add_metric([gate.model, entry.key], entry.weight)
        yield from (depth, admitted, share, weight)


def _cost(route: ModelRoute, pool: ModelPool, payload: Any, prompt_tokens: float) -> float:
    """`prompt_tokens`: the payload's prompt_estimate."""
    if not isinstance(payload, dict):
        return 1.0
    ceiling = 0
    if route.ceiling:
        ceiling = next((v for name in route.ceiling
                        if isinstance(v := payload.get(name), int) and v > 0),
                       pool.config.default_max_tokens or DEFAULT_CEILING)
    return max(1.0, ceiling + prompt_tokens / 12)
