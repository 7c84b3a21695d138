"""The reference gateway-side fair queue (bench/fairqueue.py) that the simulated gateway can
hold requests in: fair order across keys, capacity counted when a ticket starts, bounds."""

from __future__ import annotations

from collections import Counter

from bench.fairqueue import FairQueue, Ticket, Verdict


class Slots:
    """The engines' capacity as the gateway would report it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self) -> float:
        return self.n


def _fill(queue: FairQueue, key: str, count: int, **fields: object) -> list[Ticket]:
    tickets = [Ticket(key, item=f"{key}{i}", **fields) for i in range(count)]  # type: ignore[arg-type]
    for ticket in tickets:
        queue.offer(ticket, 0.0)
    _started.setdefault(id(queue), []).extend(t for t in tickets if t.started)
    return tickets


def _drain(queue: FairQueue, count: int) -> list[Ticket]:
    """Finish one started request at a time (the oldest), `count` times: what starts after
    each."""
    order: list[Ticket] = []
    running = [t for t in _started.get(id(queue), []) if t.started]
    for step in range(count):
        if running:
            queue.done(running.pop(0), float(step))
        started = queue.ready(float(step))
        order += started
        running += started
    _started[id(queue)] = running
    return order


_started: dict[int, list[Ticket]] = {}


def test_capacity_is_counted_when_a_ticket_starts_not_when_it_arrives() -> None:
    queue = FairQueue(Slots(2))
    first, second, third = (Ticket("a", item=i) for i in range(3))
    assert queue.offer(first, 0) is Verdict.START
    assert queue.offer(second, 0) is Verdict.START
    assert queue.offer(third, 0) is Verdict.QUEUED  # nothing finished yet: no third slot
    assert queue.ready(0) == []
    queue.done(first, 1)
    assert queue.ready(1) == [third] and queue.ready(1) == []


def test_a_light_key_goes_before_a_heavy_keys_backlog() -> None:
    queue = FairQueue(Slots(1))
    _fill(queue, "heavy", 50, cost=10.0)  # one started, 49 waiting
    light = Ticket("light", cost=10.0, item="light")
    assert queue.offer(light, 0) is Verdict.QUEUED
    assert _drain(queue, 1) == [light]  # next, not after the 49
    assert {t.key for t in _drain(queue, 5)} == {"heavy"}


def test_backlogged_keys_share_by_weight() -> None:
    queue = FairQueue(Slots(1))
    _fill(queue, "three", 60, weight=3.0)
    _fill(queue, "one", 60, weight=1.0)
    shares = Counter(t.key for t in _drain(queue, 40))
    assert shares["three"] + shares["one"] == 40 and abs(shares["three"] - 30) <= 1


def test_an_idle_key_banks_no_credit() -> None:
    queue = FairQueue(Slots(1))
    _fill(queue, "busy", 200)
    _drain(queue, 100)  # busy alone for a while
    _fill(queue, "late", 50)
    order = [t.key for t in _drain(queue, 20)]
    assert Counter(order) == {"busy": 10, "late": 10}  # alternating, not late 20 in a row


def test_an_earlier_class_goes_first_and_keys_share_within_it() -> None:
    queue = FairQueue(Slots(1), class_order=("interactive", "batch"))
    _fill(queue, "bulk", 30, cls="batch")
    _fill(queue, "chat-a", 4)
    _fill(queue, "chat-b", 4)
    order = _drain(queue, 12)
    assert {t.key for t in order[:8]} == {"chat-a", "chat-b"}
    assert [t.key for t in order[8:]] == ["bulk"] * 4


def test_bounds_refuse_instead_of_queueing_forever() -> None:
    queue = FairQueue(Slots(0), max_queue=10, max_per_key=4)
    verdicts = [queue.offer(Ticket("a"), 0).name for _ in range(6)]
    assert verdicts == ["QUEUED"] * 4 + ["REJECTED"] * 2
    verdicts = [queue.offer(Ticket(f"k{i}"), 0).name for i in range(8)]
    assert verdicts == ["QUEUED"] * 6 + ["REJECTED"] * 2 and queue.rejected == 4


def test_a_ticket_waits_at_most_its_class_bound() -> None:
    queue = FairQueue(Slots(0), max_wait={"interactive": 5.0, "batch": float("inf")})
    late = Ticket("a", item="late")
    queue.offer(Ticket("b", cls="batch", item="batch"), 0.0)
    queue.offer(late, 1.0)
    assert queue.next_deadline() == 6.0
    assert queue.expired(5.9) == []
    assert queue.expired(6.1) == [late] and queue.timed_out == 1
    assert queue.next_deadline() is None and queue.size == 1
