"""The registry: model alias → pool of replicas, and the choice of a replica.

The default policy is least outstanding requests with random tie-breaks: it needs no
configuration and keeps a slow replica from collecting a queue.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tram.config import ModelConfig, UpstreamConfig

__all__ = ["ModelPool", "Registry", "Replica"]


@dataclass(eq=False)
class Replica:
    url: str
    served_name: str
    api_key: str | None = None
    weight: int = 1
    outstanding: int = 0
    # Set by the supervisor while an engine it owns is down, so requests fail fast with 503.
    available: bool = True

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, default_name: str) -> Replica:
        return cls(
            url=upstream.url,
            served_name=upstream.served_name or default_name,
            api_key=upstream.api_key,
            weight=upstream.weight,
        )


@dataclass(eq=False)
class ModelPool:
    config: ModelConfig
    replicas: list[Replica]
    created: int = field(default_factory=lambda: int(time.time()))
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def served_name(self) -> str:
        return self.replicas[0].served_name if self.replicas else self.name

    def pick(self) -> Replica | None:
        """Least outstanding requests among the available replicas; ties broken at random."""
        candidates = [r for r in self.replicas if r.available]
        if not candidates:
            return None
        least = min(r.outstanding for r in candidates)
        return self._rng.choice([r for r in candidates if r.outstanding == least])

    @contextmanager
    def lease(self, replica: Replica) -> Iterator[Replica]:
        replica.outstanding += 1
        try:
            yield replica
        finally:
            replica.outstanding -= 1


class Registry:
    """All model pools by alias. Built from the config; the supervisor may add replicas."""

    def __init__(self, pools: Iterable[ModelPool] = ()) -> None:
        self._pools = {pool.name: pool for pool in pools}

    @classmethod
    def from_models(cls, models: Iterable[ModelConfig]) -> Registry:
        pools = []
        for model in models:
            default_name = (model.engine.served_name if model.engine else None) or model.name
            replicas = [Replica.from_config(u, default_name) for u in model.upstreams]
            pools.append(ModelPool(model, replicas))
        return cls(pools)

    def get(self, name: str) -> ModelPool | None:
        return self._pools.get(name)

    def __iter__(self) -> Iterator[ModelPool]:
        return iter(self._pools.values())

    def __len__(self) -> int:
        return len(self._pools)
