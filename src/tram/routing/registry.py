"""The registry: model alias → pool of replicas; a pool picks a replica through its policy.

The registry can be rebuilt from a new config while requests are in flight: a pool that is
replaced keeps serving the requests that already hold it, and replicas whose URL and served
name did not change are carried over with their health and in-flight counts.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tram.config import ModelConfig, UpstreamConfig
from tram.metrics import Metrics
from tram.routing.health import CircuitState, ReplicaHealth
from tram.routing.policies import RoutingHints, RoutingPolicy, make_policy

__all__ = ["ModelPool", "Registry", "Replica"]

NO_HINTS = RoutingHints()


@dataclass(eq=False)
class Replica:
    url: str
    served_name: str
    api_key: str | None = None
    weight: int = 1
    outstanding: int = 0
    # Set by the supervisor while an engine it owns is down, so requests fail fast with 503.
    available: bool = True
    health: ReplicaHealth | None = None
    ca_file: str | None = None
    socket: str | None = None  # a Unix socket to connect to instead of the URL's host
    context_window: int | None = None  # as the engine's /models says (routing/prober.py)
    # cache_aware routing: load the engine reports on /metrics (waiting, KV pressure), as
    # requests' worth (routing/engine_load.py); and the share of routed prompts' blocks this
    # gateway expected it to hold (an average over recent decisions).
    engine_penalty: float = 0.0
    engine_waiting: float = 0.0  # requests its engine reports waiting (0: none, or unknown)
    engine_read_at: float = 0.0  # when that reading was asked for (time.monotonic)
    prefix_hit_estimate: float = 0.0
    routing_load: float = 0.0  # see update_load

    def update_load(self) -> None:
        """What cache_aware routing weighs (routing/prefix.py): this gateway's requests in
        flight, plus the engine's queue and KV pressure from its /metrics (everyone's). Not
        the engine's running count: a batch that is full but not queueing is not overloaded,
        and bounding on it made gateways with differently-timed scrapes move conversations
        apart (docs/decisions.md). One attribute, so that a decision over 64 replicas reads it
        in one C-level pass."""
        self.routing_load = self.outstanding + self.engine_penalty

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, default_name: str) -> Replica:
        return cls(url=upstream.url, served_name=upstream.served_name or default_name,
                   api_key=upstream.api_key, weight=upstream.weight, ca_file=upstream.ca_file,
                   socket=upstream.socket)

    def takes_traffic(self) -> bool:
        return self.available and (self.health is None or self.health.admits())

    def is_healthy(self) -> bool:
        return self.available and (self.health is None
                                   or self.health.state is CircuitState.HEALTHY)


@dataclass(eq=False)
class ModelPool:
    config: ModelConfig
    replicas: list[Replica]
    metrics: Metrics | None = None
    policy: RoutingPolicy | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    in_flight: int = 0
    # Routes its engines answered 404/405/501 for (learned, until the next reload): bridged
    # from then on without asking again, where a bridge exists.
    lacking: set[str] = field(default_factory=set)
    # Scrape its engines' load even with one replica or another policy (the fair queue's
    # saturation signal, `sharing.queue.engine_signal`).
    scrape_load: bool = False
    name: str = field(init=False)  # config.name, read on every request: a plain attribute
    # What each route's preparation needs on this model, worked out once by the relay
    # (relay/steps.py `RouteSteps`; a reload builds new pools).
    steps: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.config.name
        if self.policy is None:
            self.policy = make_policy(self.config.routing)
        for replica in self.replicas:
            self.adopt(replica)

    def adopt(self, replica: Replica) -> None:
        """Give a replica this model's health settings (a new one, or one carried over)."""
        if replica.health is None or replica.health.config != self.config.health:
            metrics, name = self.metrics, self.name

            def opened(url: str = replica.url) -> None:
                if metrics is not None:
                    metrics.circuit_opened.labels(name, url).inc()

            replica.health = ReplicaHealth(self.config.health, on_open=opened)
        if replica not in self.replicas:
            self.replicas.append(replica)

    @property
    def served_name(self) -> str:
        return self.replicas[0].served_name if self.replicas else self.name

    def pick(self, hints: RoutingHints = NO_HINTS,
             exclude: Collection[Replica] = ()) -> Replica | None:
        """The policy's choice among the replicas that take traffic now; None if none does.
        A model of one replica has nothing to choose or learn: the policy is not asked."""
        if len(self.replicas) == 1:
            only = self.replicas[0]
            chosen = None if only in exclude or not only.takes_traffic() else only
        else:
            chosen = self._choose(hints, exclude)
        if chosen is not None and chosen.health is not None:
            chosen.health.on_chosen()
        return chosen

    def _choose(self, hints: RoutingHints, exclude: Collection[Replica]) -> Replica | None:
        candidates = [r for r in self.replicas if r not in exclude and r.takes_traffic()]
        if not candidates:
            return None
        assert self.policy is not None
        chosen = self.policy.choose(candidates, hints)
        assert isinstance(chosen, Replica)
        reason = getattr(self.policy, "last_reason", None)
        if reason is not None and hints.prefix is not None:
            match: float = self.policy.last_match  # type: ignore[attr-defined]
            chosen.prefix_hit_estimate += 0.05 * (match - chosen.prefix_hit_estimate)
            if self.metrics is not None:
                self.metrics.count_decision(self.name, reason)
        return chosen

    def saturated(self) -> bool:
        """Every replica that takes traffic reports requests waiting at its engine, in a
        reading of the last three scrape rounds (a stale one says nothing: scraping may
        have stopped, by a reload, or the engine stopped answering it)."""
        for replica in self.replicas:  # on every request: no engine queued, no more to ask
            if replica.engine_waiting > 0:
                break
        else:
            return False
        oldest: float | None = None
        live = False
        for replica in self.replicas:
            if not replica.takes_traffic():
                continue
            if replica.engine_waiting <= 0:
                return False
            if oldest is None:
                oldest = time.monotonic() - self.config.routing.reading_lifetime
            if replica.engine_read_at < oldest:
                return False
            live = True
        return live

    def hold(self, replica: Replica) -> None:
        """Count a request in flight for this model (`max_in_flight`) and on the replica
        (routing load; the in-flight gauge read when /metrics is scraped). Undone by
        `release`, exactly once (relay/forward.py's `_Held`)."""
        self.in_flight += 1
        replica.outstanding += 1
        replica.update_load()

    def release(self, replica: Replica) -> None:
        self.in_flight -= 1
        replica.outstanding -= 1
        replica.update_load()


class Registry:
    """All model pools by alias."""

    def __init__(self, pools: Iterable[ModelPool] = (), metrics: Metrics | None = None) -> None:
        self._pools = {pool.name: pool for pool in pools}
        self._attached: dict[str, list[Replica]] = {}
        # (model, upstream URL) → the replicas its name resolved to (routing/discovery.py).
        self._discovered: dict[tuple[str, str], list[Replica]] = {}
        self.models: list[ModelConfig] = []
        self.metrics = metrics
        self.scrape_load = False  # every pool's `scrape_load`

    @classmethod
    def from_models(cls, models: Iterable[ModelConfig], metrics: Metrics | None = None) -> Registry:
        registry = cls(metrics=metrics)
        registry.replace(models)
        return registry

    def replace(self, models: Iterable[ModelConfig]) -> None:
        """Swap in a new set of models; in-flight requests keep the pools they hold."""
        self.models = list(models)
        old = {(r.url, r.socket, r.served_name): r
               for pool in self._pools.values() for r in pool.replicas}
        pools = {}
        for model in self.models:
            default_name = (model.engine.served_name if model.engine else None) or model.name
            replicas = []
            for upstream in model.upstreams:
                found = self._discovered.get((model.name, upstream.url))
                if found is not None:  # until its name first resolves, the URL itself
                    replicas += found
                    continue
                fresh = Replica.from_config(upstream, default_name)
                kept = old.get((fresh.url, fresh.socket, fresh.served_name))
                if kept is not None:
                    kept.api_key, kept.weight = fresh.api_key, fresh.weight
                    kept.ca_file = fresh.ca_file
                replicas.append(kept or fresh)
            replicas += self._attached.get(model.name, [])
            pools[model.name] = ModelPool(model, replicas, self.metrics,
                                          scrape_load=self.scrape_load)
        self._pools = pools

    def set_discovered(self, model: str, upstream_url: str, replicas: list[Replica]) -> None:
        """The replicas an upstream's name resolves to now; the pools are rebuilt, carrying
        over every replica whose address did not change (health and in-flight counts kept)."""
        self._discovered[(model, upstream_url)] = replicas
        self.replace(self.models)

    def discovered(self, model: str, upstream_url: str) -> list[Replica]:
        return self._discovered.get((model, upstream_url), [])

    def attach(self, model: str, replica: Replica) -> None:
        """Add a replica that is not in the config (an engine `tram up` launched); it stays
        with the model across reloads."""
        self._attached.setdefault(model, []).append(replica)
        pool = self._pools.get(model)
        if pool is not None:
            pool.adopt(replica)

    def bind_metrics(self, metrics: Metrics) -> None:
        self.metrics = metrics
        for pool in self._pools.values():
            pool.metrics = metrics
            for replica in pool.replicas:
                replica.health = None
                pool.adopt(replica)

    def get(self, name: str) -> ModelPool | None:
        return self._pools.get(name)

    def __iter__(self) -> Iterator[ModelPool]:
        return iter(list(self._pools.values()))
