"""Routing policies and the replica circuit, with fake replicas and a fake clock."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from tram.config import HealthConfig
from tram.routing.health import CircuitState, ReplicaHealth
from tram.routing.policies import Affinity, LeastOutstanding, RoutingHints, WeightedRoundRobin

NONE = RoutingHints()


@dataclass(eq=False)
class FakeReplica:
    url: str
    weight: int = 1
    outstanding: int = 0


def replicas(n: int) -> list[FakeReplica]:
    return [FakeReplica(f"http://r{i}") for i in range(n)]


def test_least_outstanding_picks_the_least_busy_and_breaks_ties_at_random() -> None:
    a, b, c = replicas(3)
    a.outstanding, b.outstanding, c.outstanding = 3, 1, 1
    policy = LeastOutstanding(random.Random(1))
    picks = Counter(policy.choose([a, b, c], NONE).url for _ in range(400))
    assert set(picks) == {"http://r1", "http://r2"}
    assert 150 < picks["http://r1"] < 250


def test_least_outstanding_spreads_a_burst_evenly() -> None:
    pool = replicas(4)
    policy = LeastOutstanding()
    for _ in range(20):
        policy.choose(pool, NONE).outstanding += 1  # type: ignore[attr-defined]
    assert [r.outstanding for r in pool] == [5, 5, 5, 5]


def test_weighted_round_robin_is_smooth_and_proportional() -> None:
    a, b = replicas(2)
    a.weight = 3
    policy = WeightedRoundRobin()
    sequence = [policy.choose([a, b], NONE).url[-1] for _ in range(8)]
    assert Counter(sequence) == {"0": 6, "1": 2}
    assert "00000" not in "".join(sequence * 2)  # interleaved, not in blocks


def test_affinity_is_sticky_and_spreads_keys() -> None:
    pool = replicas(4)
    policy = Affinity(overload=4)
    for key in ("user:alice", "prefix:You are a helpful assistant"):
        first = policy.choose(pool, RoutingHints(key))
        assert all(policy.choose(pool, RoutingHints(key)) is first for _ in range(20))
    spread = Counter(policy.choose(pool, RoutingHints(f"user:{i}")).url for i in range(400))
    assert len(spread) == 4 and min(spread.values()) > 60


def test_affinity_falls_back_when_the_sticky_replica_is_overloaded_or_gone() -> None:
    pool = replicas(3)
    policy = Affinity(overload=4)
    hints = RoutingHints("user:bob")
    sticky = policy.choose(pool, hints)
    sticky.outstanding = 4  # 4 more than the others
    assert policy.choose(pool, hints) is not sticky
    sticky.outstanding = 3
    assert policy.choose(pool, hints) is sticky
    others = [r for r in pool if r is not sticky]
    moved = policy.choose(others, hints)  # the sticky replica is unhealthy: not a candidate
    assert moved in others
    assert policy.choose(pool, hints) is sticky  # back where it was once healthy again


def test_affinity_keeps_most_keys_in_place_when_a_replica_leaves() -> None:
    pool = replicas(4)
    policy = Affinity(overload=100)
    before = {i: policy.choose(pool, RoutingHints(f"k{i}")) for i in range(200)}
    after = {i: policy.choose(pool[:3], RoutingHints(f"k{i}")) for i in range(200)}
    moved = [i for i in before if before[i] is not after[i]]
    assert all(before[i] is pool[3] for i in moved)  # only the departed replica's keys move


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_failures_then_half_opens_for_one_trial() -> None:
    clock = Clock()
    opened: list[int] = []
    health = ReplicaHealth(HealthConfig(eject_after=3, eject_seconds=10), clock,
                           on_open=lambda: opened.append(1))
    health.record_failure()
    health.record_failure()
    assert health.admits()
    health.record_failure()
    assert health.state is CircuitState.OPEN and not health.admits() and opened == [1]
    clock.now = 10.5
    assert health.admits() and health.state is CircuitState.HALF_OPEN
    health.on_chosen()
    assert not health.admits()  # one trial at a time
    health.record_failure()
    assert health.state is CircuitState.OPEN and opened == [1, 1]
    clock.now = 21
    assert health.admits()
    health.on_chosen()
    health.record_success()
    assert health.state is CircuitState.HEALTHY and health.admits()


def test_probes_take_a_replica_down_and_bring_it_back() -> None:
    health = ReplicaHealth(HealthConfig(unhealthy_after=2, healthy_after=2))
    health.record_probe(False)
    assert health.admits()
    health.record_probe(False)
    assert health.state is CircuitState.DOWN and not health.admits()
    health.record_probe(True)
    assert not health.admits()
    health.record_probe(True)
    assert health.state is CircuitState.HEALTHY and health.admits()
