"""Routing policies: given the replicas that may take a request now, choose one.

Each policy is a small class behind one method, `choose(candidates, hints)`, so a model's
policy is a config value and each policy is tested alone with fake replicas.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tram.config import RoutingConfig
from tram.routing.prefix import CacheAware, PrefixKey

__all__ = [
    "Affinity",
    "LeastOutstanding",
    "Routable",
    "RoutingHints",
    "RoutingPolicy",
    "WeightedRoundRobin",
    "make_policy",
]


class Routable(Protocol):
    url: str
    weight: int
    outstanding: int


@dataclass(frozen=True)
class RoutingHints:
    """What a request says about where it would be best served."""

    affinity_key: str | None = None
    prefix: PrefixKey | None = None  # cache_aware: the prompt's blocks and anchor


class RoutingPolicy(Protocol):
    def choose(self, candidates: Sequence[Routable], hints: RoutingHints) -> Routable: ...


class LeastOutstanding:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[Routable], hints: RoutingHints) -> Routable:
        least = min(r.outstanding for r in candidates)
        return self._rng.choice([r for r in candidates if r.outstanding == least])


class WeightedRoundRobin:
    """Smooth weighted round robin (nginx's): even spread, in proportion to the weights."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def choose(self, candidates: Sequence[Routable], hints: RoutingHints) -> Routable:
        total = sum(r.weight for r in candidates)
        for replica in candidates:
            self._current[replica.url] = self._current.get(replica.url, 0) + replica.weight
        best = max(candidates, key=lambda r: self._current[r.url])
        self._current[best.url] -= total
        return best


class Affinity:
    """Same key → same replica (rendezvous hashing), unless that replica is overloaded.

    Rendezvous hashing keeps most keys where they were when a replica leaves or joins, so a
    replica's prefix cache stays useful through ejections and reloads.
    """

    def __init__(self, overload: int, fallback: RoutingPolicy | None = None) -> None:
        self._overload = overload
        self._fallback = fallback or LeastOutstanding()

    def choose(self, candidates: Sequence[Routable], hints: RoutingHints) -> Routable:
        if hints.affinity_key is None:
            return self._fallback.choose(candidates, hints)
        sticky = max(candidates, key=lambda r: _score(hints.affinity_key or "", r.url))
        least = min(r.outstanding for r in candidates)
        if sticky.outstanding - least >= self._overload:
            return self._fallback.choose(candidates, hints)
        return sticky


def _score(key: str, url: str) -> bytes:
    return hashlib.blake2b(f"{key}\0{url}".encode(), digest_size=8).digest()


def make_policy(config: RoutingConfig) -> RoutingPolicy:
    if config.policy == "round_robin":
        return WeightedRoundRobin()
    if config.policy == "affinity":
        return Affinity(config.affinity_overload)
    if config.policy in ("cache_aware", "auto"):
        # auto: with one replica this is the least loaded one (the prompt is not even hashed:
        # relay/steps.py asks for the prefix only when a pool has several replicas).
        return CacheAware(config)
    return LeastOutstanding()


