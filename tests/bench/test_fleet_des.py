"""The discrete-event fleet's seams: tagged flows reach the engines with their priority, and
a queue plugged into the simulated gateway decides what starts (bench/fleet_des.py)."""

from __future__ import annotations

from dataclasses import replace

from bench.engine_model import EngineConfig
from bench.fairqueue import FairQueue
from bench.fleet_des import Fleet, summary
from bench.workloads import Flow

INTERACTIVE = Flow("unique", 5.0, key="chat", cls="interactive", max_tokens=24, seed=3)
BATCH = Flow("unique", 16.0, key="jobs", cls="batch", max_tokens=256, seed=4)  # ~2× capacity


def _interactive_p90(flows: list[Flow], scheduling: str = "fcfs", queue: bool = False) -> float:
    fleet = Fleet(replicas=2, engine=EngineConfig(scheduling=scheduling),  # type: ignore[arg-type]
                  replica_cap=32 if queue else float("inf"),
                  admission=(lambda capacity: FairQueue(
                      capacity, class_order=("interactive", "batch"), max_per_key=10_000))
                  if queue else None)
    turns = fleet.run(flows, seconds=6, warmup=3, drain=30)
    return summary(turns, fleet.window, "chat", fleet.stopped)["p90"]


def test_a_batch_flood_delays_an_interactive_key_unless_something_orders_them() -> None:
    alone = _interactive_p90([INTERACTIVE])
    fcfs = _interactive_p90([INTERACTIVE, BATCH])
    priority = _interactive_p90([INTERACTIVE, replace(BATCH, priority=1)], "priority")
    queued = _interactive_p90([INTERACTIVE, BATCH], queue=True)
    assert fcfs > 10 * alone  # FCFS engines: behind the flood's backlog
    assert priority < fcfs / 5  # the engines serve priority 0 first
    assert queued < fcfs / 5  # the gateway holds the flood, interactive first
