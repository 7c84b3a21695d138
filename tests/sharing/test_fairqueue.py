"""The gateway's fair queue (src/tram/sharing/fairqueue.py), clock-free: weighted order across
keys, classes strictly in order, bounds, expiry, cancellation, a slot freed exactly once."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from tram.sharing.fairqueue import FairQueue, Ticket, Verdict


class Slots:
    def __init__(self, n: float) -> None:
        self.n = n

    def __call__(self) -> float:
        return self.n


class Engine:
    """Runs what the queue starts, one finished at a time (oldest first)."""

    def __init__(self, queue: FairQueue) -> None:
        self.queue = queue
        self.running: list[Ticket] = []
        self.now = 0.0

    def offer(self, key: str, count: int = 1, **fields: object) -> list[Ticket]:
        tickets = [Ticket(key, item=f"{key}{i}", **fields) for i in range(count)]  # type: ignore[arg-type]
        for ticket in tickets:
            if self.queue.offer(ticket, self.now) is Verdict.START:
                self.running.append(ticket)
        return tickets

    def finish(self, count: int) -> list[Ticket]:
        order: list[Ticket] = []
        for _ in range(count):
            self.now += 1.0
            self.queue.done(self.running.pop(0), self.now)
            started = self.queue.ready(self.now)
            order += started
            self.running += started
        return order


def test_keys_share_by_weight_in_a_fair_interleaving() -> None:
    engine = Engine(FairQueue(Slots(1)))
    engine.offer("one", 40, weight=1.0)  # the first starts at once
    engine.offer("three", 40, weight=3.0)
    order = [t.key for t in engine.finish(16)]
    assert Counter(order) == {"three": 12, "one": 4}
    # interleaved, not one key's run after the other's
    runs = "".join(key[0] for key in order).replace("oo", "!").split("o")
    assert "!" not in "".join(runs) and max(len(run) for run in runs) <= 4


def test_cost_counts_not_just_requests() -> None:
    engine = Engine(FairQueue(Slots(1)))
    engine.offer("big", 20, cost=4.0)
    engine.offer("small", 20, cost=1.0)
    assert Counter(t.key for t in engine.finish(15)) == {"small": 12, "big": 3}


def test_interactive_goes_strictly_before_batch() -> None:
    engine = Engine(FairQueue(Slots(1)))
    engine.offer("bulk", 10, cls="batch", weight=100.0)
    engine.offer("chat", 3)
    assert [t.key for t in engine.finish(5)] == ["chat"] * 3 + ["bulk"] * 2


def test_a_key_s_batch_lines_do_not_hold_back_its_own_chat() -> None:
    engine = Engine(FairQueue(Slots(1)))
    engine.offer("k", 5, cls="batch")
    chat = engine.offer("k", 1)
    assert engine.finish(1) == chat


def test_bounds_refuse_and_count() -> None:
    queue = FairQueue(Slots(0), max_queue=5, max_per_key=3)
    assert [queue.offer(Ticket("a"), 0).name for _ in range(4)] == ["QUEUED"] * 3 + ["REJECTED"]
    assert [queue.offer(Ticket(k), 0).name for k in "bcd"] == ["QUEUED", "QUEUED", "REJECTED"]
    assert queue.rejected == 2 and queue.size == 5 and queue.depth("a") == 3


def test_wait_bounds_per_class_and_next_deadline() -> None:
    queue = FairQueue(Slots(0), max_wait={"interactive": 5.0, "batch": 50.0})
    first, second = Ticket("a"), Ticket("b")
    bulk = Ticket("a", cls="batch")
    queue.offer(bulk, 0.0)
    queue.offer(first, 1.0)
    queue.offer(second, 2.0)
    assert queue.next_deadline() == 6.0
    assert queue.expired(5.9) == []
    assert queue.expired(6.5) == [first] and queue.next_deadline() == 7.0
    assert set(queue.expired(100.0)) == {second, bulk}
    assert queue.timed_out == 3 and queue.size == 0 and queue.next_deadline() is None


def test_a_cancelled_ticket_leaves_and_the_next_of_its_key_moves_up() -> None:
    engine = Engine(FairQueue(Slots(1)))
    engine.offer("x")
    a0, a1 = engine.offer("a", 2)
    b0, = engine.offer("b")
    engine.queue.cancel(a0, 0.0)
    engine.queue.cancel(a0, 0.0)  # twice: no effect
    assert engine.queue.size == 2 and engine.queue.depth("a") == 1
    assert set(engine.finish(2)) == {a1, b0}


def test_tickets_that_leave_unserved_give_back_their_charge() -> None:
    """Two equal keys; b's first two requests leave while waiting (expired, or the client
    went away): b is not charged for service it never had, so its next request is served
    beside a's first, not after all of a's (under overload, such charges compound until one
    key gets nearly everything and the other's requests all time out)."""
    engine = Engine(FairQueue(Slots(0)))
    a1, a2, a3 = engine.offer("a", 3)
    b1, b2, b3 = engine.offer("b", 3)
    engine.queue.cancel(b1, 0.0)
    engine.queue.cancel(b2, 0.0)
    engine.queue.capacity = Slots(4)
    assert engine.queue.ready(1.0) == [a1, b3, a2, a3]


def test_done_frees_one_slot_exactly_once() -> None:
    queue = FairQueue(Slots(1))
    running = Ticket("a")
    assert queue.offer(running, 0) is Verdict.START
    waiting = [Ticket("b"), Ticket("c")]
    for ticket in waiting:
        queue.offer(ticket, 0)
    queue.done(running, 1)
    queue.done(running, 1)  # a second done must not free a second slot
    assert queue.ready(1) == [waiting[0]] and queue.started == 1
    queue.cancel(waiting[0], 2)  # a started ticket whose client left: done
    assert queue.ready(2) == [waiting[1]] and queue.started == 1


def test_an_idle_key_banks_no_credit() -> None:
    engine = Engine(FairQueue(Slots(1)))
    engine.offer("busy", 200)
    engine.finish(100)
    engine.offer("late", 50)
    assert Counter(t.key for t in engine.finish(20)) == {"busy": 10, "late": 10}


def test_shares_follow_recent_starts_and_fade() -> None:
    engine = Engine(FairQueue(Slots(1)))
    engine.offer("one", 40, weight=1.0)
    engine.offer("three", 40, weight=3.0)
    engine.finish(39)
    shares = engine.queue.shares(engine.now)
    assert shares["three"] == pytest.approx(0.75, abs=0.05)
    assert engine.queue.shares(engine.now + 3600) == {}


def test_an_offered_ticket_cannot_be_offered_again() -> None:
    queue = FairQueue(Slots(1))
    ticket = Ticket("a")
    queue.offer(ticket, 0)
    with pytest.raises(ValueError):
        queue.offer(ticket, 0)


def test_a_class_share_keeps_a_reserve_for_the_other_class() -> None:
    queue = FairQueue(Slots(10), class_share={"batch": 0.3})
    bulk = [Ticket("bulk", cls="batch") for _ in range(6)]
    assert [queue.offer(t, 0).name for t in bulk] == ["START"] * 3 + ["QUEUED"] * 3
    # the reserve: interactive tickets start at once although batch ones wait
    chats = [Ticket(f"chat{i}") for i in range(8)]
    assert [queue.offer(t, 0).name for t in chats] == ["START"] * 7 + ["QUEUED"]
    assert queue.ready(0) == []  # full
    queue.done(bulk[0], 1)
    assert queue.ready(1) == [chats[7]]  # interactive first, even into a freed batch slot
    queue.done(chats[0], 2)
    assert queue.ready(2) == [bulk[3]]  # batch back to its 3
    queue.done(chats[1], 3)
    assert queue.ready(3) == [] and queue.started == 9  # at its share: the slot stays free


def test_a_class_share_follows_the_capacity() -> None:
    slots = Slots(4)
    queue = FairQueue(slots, class_share={"batch": 0.5})
    bulk = [Ticket("bulk", cls="batch") for _ in range(6)]
    assert [queue.offer(t, 0).name for t in bulk].count("START") == 2
    slots.n = 8
    assert queue.ready(0) == bulk[2:4]


def test_a_paced_class_starts_its_prompts_one_after_another() -> None:
    queue = FairQueue(Slots(math.inf), class_prompts={"batch": 1})
    lines = [Ticket("bulk", cls="batch", prompt_seconds=0.5) for _ in range(3)]
    # unbounded, yet a paced class goes through the queue: one prompt counted at a time
    assert [queue.offer(t, 0).name for t in lines] == ["START", "QUEUED", "QUEUED"]
    assert queue.next_prompt_end(0.1) == 0.5
    chat = Ticket("chat")
    assert queue.offer(chat, 0.1) is Verdict.START  # the other class is not held back
    assert queue.ready(0.4) == []
    assert queue.ready(0.5) == [lines[1]]  # the first prompt's estimate ran out
    assert queue.next_prompt_end(0.6) == 1.0
    queue.done(lines[1], 0.7)  # ended before its estimate: its prompt is done too
    assert queue.next_prompt_end(0.7) is None  # nothing counting: ready() starts the next
    assert queue.ready(0.7) == [lines[2]]
    assert queue.started == 3  # lines[0], the chat, lines[2]


def test_pacing_counts_its_limit_and_only_while_something_waits() -> None:
    queue = FairQueue(Slots(10), class_prompts={"batch": 2})
    lines = [Ticket("bulk", cls="batch", prompt_seconds=1.0) for _ in range(3)]
    assert [queue.offer(t, 0).name for t in lines] == ["START", "START", "QUEUED"]
    assert queue.next_prompt_end(2.0) is None  # both ran out: no timer needed
    assert queue.ready(2.0) == [lines[2]]
    assert queue.next_prompt_end(2.5) is None  # counting, but nothing waits for it
    # a ticket with no estimate is not paced (prompt_seconds 0)
    free = [Ticket("bulk", cls="batch") for _ in range(3)]
    assert [queue.offer(t, 2.5).name for t in free] == ["START"] * 3


def test_a_held_back_class_needs_a_rank_of_its_own() -> None:
    # with one rank for both, a waiting paced batch head would hold back the chat behind it
    with pytest.raises(ValueError, match="missing: \\['batch'\\]"):
        FairQueue(Slots(math.inf), class_order=(), class_prompts={"batch": 1})
    with pytest.raises(ValueError, match="class_order"):
        FairQueue(Slots(4), class_order=("interactive",), class_share={"batch": 0.5})


def test_paced_starts_of_an_unbounded_model_count_no_shares() -> None:
    queue = FairQueue(Slots(math.inf), class_prompts={"batch": 1})
    lines = [Ticket("bulk", cls="batch", prompt_seconds=1.0) for _ in range(2)]
    assert [queue.offer(t, 0).name for t in lines] == ["START", "QUEUED"]
    assert queue.offer(Ticket("chat"), 0) is Verdict.START
    assert queue.ready(1.0) == [lines[1]]
    assert queue.shares(1.0) == {}  # unbounded: no labels, as for unpaced requests
