"""The fleet simulator's model of vLLM's scheduler (bench/engine_model.py): FCFS and priority
ordering, preemption when KV blocks run out, recompute on resume, the step's cost."""

from __future__ import annotations

import random

import pytest
from bench.engine_model import EngineConfig, EngineModel, SimRequest

WORDS = ["ba", "ke", "lo", "mu", "ni", "po", "ra", "su", "ti", "vo"]


def text(tokens: int, seed: int) -> str:
    """`tokens` tokens (4 characters each) of text no other seed shares."""
    rng = random.Random(seed)
    return "".join(rng.choice(WORDS) + rng.choice(WORDS) for _ in range(tokens))


def engine(scheduling: str = "fcfs", blocks: int = 1000, batch: int = 32) -> EngineModel:
    return EngineModel(EngineConfig(kv_capacity_tokens=blocks * 16, max_batch=batch,
                                    scheduling=scheduling))  # type: ignore[arg-type]


def step(model: EngineModel) -> tuple[float, list[SimRequest]]:
    duration = model.begin_step()
    return duration, model.end_step()


def run_until_idle(model: EngineModel) -> list[SimRequest]:
    """Every request in the order it produced its first token."""
    order: list[SimRequest] = []
    while not model.idle():
        for request in step(model)[1]:
            if request.generated == 1 and request not in order:
                order.append(request)
    return order


def test_a_step_costs_its_batch_and_its_prompts() -> None:
    model = engine()
    first = model.submit(text(1000, 1), max_tokens=4)
    duration, produced = step(model)
    assert duration == pytest.approx(6.0 + 0.5 * 1 + 0.06 * 1000)  # ~66 ms to a first token
    assert produced == [first] and first.generated == 1
    again = model.submit(text(1000, 1), max_tokens=4)  # the same prompt: 62 blocks cached
    duration, _ = step(model)
    assert again.cached_tokens == 992
    assert duration == pytest.approx(6.0 + 0.5 * 2 + 0.06 * 8)
    assert model.hits == 992 and model.queries == 2000


@pytest.mark.parametrize("scheduling", ["fcfs", "priority"])
def test_equal_priorities_are_served_in_arrival_order(scheduling: str) -> None:
    model = engine(scheduling, batch=1)
    requests = [model.submit(text(100, n), max_tokens=2) for n in range(5)]
    assert run_until_idle(model) == requests


def test_fcfs_ignores_priority() -> None:
    model = engine("fcfs", batch=1)
    low = model.submit(text(100, 1), max_tokens=2, priority=5)
    high = model.submit(text(100, 2), max_tokens=2, priority=-5)
    assert run_until_idle(model) == [low, high]


def test_priority_serves_the_lowest_value_first_then_arrival() -> None:
    model = engine("priority", batch=1)
    first_batch = model.submit(text(100, 1), max_tokens=2, priority=1)
    second_batch = model.submit(text(100, 2), max_tokens=2, priority=1)
    interactive = model.submit(text(100, 3), max_tokens=2, priority=0)
    urgent = model.submit(text(100, 4), max_tokens=2, priority=-1)
    assert run_until_idle(model) == [urgent, interactive, first_batch, second_batch]


def _two_growing(scheduling: str) -> tuple[EngineModel, SimRequest, SimRequest]:
    """Two running 64-token prompts (4 blocks each) in a 10-block cache: each takes a fifth
    block once its sequence passes 64 tokens and needs a sixth once it passes 80, when only
    one of them can have it."""
    model = engine(scheduling, blocks=10)
    low = model.submit(text(64, 1), max_tokens=40, priority=1)
    high = model.submit(text(64, 2), max_tokens=24, priority=0)
    for _ in range(17):
        step(model)
    assert low.generated == high.generated == 17 and model.preemptions == 0
    assert model.used_blocks() == 10
    return model, low, high


def test_priority_preempts_the_lowest_priority_running_request() -> None:
    model, low, high = _two_growing("priority")
    late = model.submit(text(16, 3), max_tokens=2, priority=0)
    _, produced = step(model)
    assert low.preemptions == 1 and not low.running and low in model.waiting
    assert produced == [high] and high.running
    assert late in model.waiting  # a step that preempted admits nothing
    assert model.preemptions == 1


def test_fcfs_preempts_the_last_admitted_request() -> None:
    model, low, high = _two_growing("fcfs")
    _, produced = step(model)
    assert high.preemptions == 1 and high in model.waiting  # admitted second: the victim
    assert produced == [low]
    assert model.waiting[0] is high  # back at the front of the queue


def test_a_preempted_request_is_recomputed_when_it_resumes() -> None:
    model, low, high = _two_growing("priority")
    step(model)  # low preempted with 17 tokens produced
    while high.running:
        step(model)
    assert low.generated == 17
    duration, produced = step(model)  # low resumes: its prompt blocks were not evicted
    assert produced == [low] and low.generated == 18
    # Recomputed: its 64 prompt tokens are all cached, the 17 it produced are not.
    assert duration == pytest.approx(6.0 + 0.5 * 1 + 0.06 * 17)
    assert low.cached_tokens == 0  # counted at its first admission only
    assert run_until_idle(model) == [] and low.done and high.done


def test_a_waiting_request_never_preempts_a_running_one() -> None:
    model = engine("priority", blocks=10)
    batch = model.submit(text(144, 1), max_tokens=10, priority=5)  # 9 blocks
    step(model)
    urgent = model.submit(text(64, 2), max_tokens=2, priority=-5)  # 4 blocks: no room
    for _ in range(9):
        _, produced = step(model)
        assert produced == [batch] and urgent in model.waiting
    assert batch.done and model.preemptions == 0
    _, produced = step(model)
    assert produced == [urgent]


def test_a_cancelled_request_leaves_the_queue_and_the_batch() -> None:
    model = engine(batch=1)
    running = model.submit(text(64, 1), max_tokens=10)
    waiting = model.submit(text(64, 2), max_tokens=10)
    step(model)
    model.cancel(waiting)
    model.cancel(running)
    step(model)
    assert model.idle() and model.used_blocks() == len(model.cache)
    assert b"vllm:num_requests_waiting" in model.metrics("m")


def test_a_request_that_must_preempt_itself_stops_the_step() -> None:
    model = engine("priority", blocks=10)
    high = model.submit(text(64, 1), max_tokens=30, priority=0)  # 4 blocks
    low = model.submit(text(72, 2), max_tokens=30, priority=1)  # 4 blocks and a tail
    for _ in range(9):
        step(model)
    # low's sequence passes 80 tokens and needs an eleventh block; it is the lowest.
    _, produced = step(model)
    assert produced == [high] and low.preemptions == 1 and low in model.waiting
    assert high.preemptions == 0
