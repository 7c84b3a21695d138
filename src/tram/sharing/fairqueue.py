"""The gateway's fair queue in front of a saturated model: weighted fair share across keys
within a class, classes strictly in order, bounded in size and wait.

Synchronous and clock-free (the caller passes `now`), so the same code runs under the
gateway's asyncio loop (sharing/gate.py) and under the discrete-event fleet's virtual clock
(bench/fleet_des.py, bench/fairness.py):

    verdict = queue.offer(ticket, now)   # START: route it now; QUEUED: hold it; REJECTED: 429
    queue.done(ticket, now)              # a started ticket finished (or failed), exactly once
    queue.cancel(ticket, now)            # a queued ticket's client went away (or done, if started)
    for ticket in queue.ready(now): …    # held tickets started now, in fair order
    for ticket in queue.expired(now): …  # held tickets past their class's wait bound: refuse
    queue.next_deadline()                # when to call expired() next, or None
    queue.next_prompt_end(now)           # when to call ready() next for a paced class, or None

It counts what it started until `done`, and starts a ticket only while that count is under
`capacity()`. It counts at the moment it starts a ticket, not when the request reaches the
pool: under asyncio the request resumes later, and a queue that read the pool's in-flight
count would start its whole backlog before any of it arrived (docs/decisions.md).

Policy: start-time fair queuing (Goyal et al., 1996). Each (class, key) is a flow whose
tickets wait in arrival order; a ticket's start tag is max(the class's virtual time, its
flow's last finish tag), its finish tag the start plus cost / weight; the head with the
smallest start tag goes first and the class's virtual time moves to it, so an idle key banks
no credit. A class earlier in `class_order` always goes before a later one.

Pacing (`class_prompts`, e.g. {"batch": 1}): at most that many of a class's started tickets
count as computing their prompt at once, each from its start for `prompt_seconds` (the caller's
estimate) or until done (sharing/pacing.py). A batch prompt is one long engine step stalling
every decode of its replica; paced, an interactive arrival finds an engine out of one
(docs/decisions.md, "Batch prompts one at a time"). A paced class always goes through the queue.

Pacing by key (`key_prompts`, e.g. 2): while the model is saturated (what started and waits is
more than its capacity) and another key sent it a request within the last minute or has one
waiting, at most that many of one key's started tickets count as computing their prompt at
once: the rest of the engines' prompt time is a reserve for the other keys' arrivals
(docs/decisions.md, "Prompts per key"). A held key holds back no other key: the queue passes
over its head, and another key's new ticket starts at once if only held keys wait before it.

Costs: `offer` and `ready` are O(log flows) per ticket (pacing keys, with tickets waiting,
`offer` also reads each waiting flow and `ready` passes over held keys' heads); `expired` and
`next_deadline` read the front of one arrival-ordered deque per class (the wait bound is per
class, so arrival order is deadline order, and the oldest ticket of a class is the head of its
flow). Tickets that started or left are dropped from those deques lazily.
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tram.sharing.pacing import CONTENDED_SECONDS, Contention, Prompting

__all__ = ["DEFAULT_WAIT", "Admission", "FairQueue", "Ticket", "TicketState", "Verdict"]

DEFAULT_WAIT: Mapping[str, float] = {"interactive": 30.0, "batch": 600.0}
SHARE_HALF_LIFE = 60.0  # seconds (of `now`) over which a start's weight in the shares halves
_FADED = 0.5  # a key whose decayed started cost fell below this (in cost units) is dropped
_PRUNE_AT = 4096  # finish tags kept before those no longer ahead of the clock are pruned


class Verdict(enum.Enum):
    START = "start"
    QUEUED = "queued"
    REJECTED = "rejected"


class TicketState(enum.Enum):
    """Where a ticket is: offered, waiting, holding a slot, or out."""

    NEW = 0
    QUEUED = 1
    STARTED = 2
    GONE = 3  # done, cancelled, expired or rejected


@dataclass(eq=False)
class Ticket:
    key: str  # who sends it: a virtual key's id
    weight: float = 1.0  # the key's share (> 0)
    cls: str = "interactive"  # its class: an order and a wait bound each
    item: Any = None  # what the caller holds for it (a request, a future)
    cost: float = 1.0  # its size in the fair share (requests, or estimated tokens)
    prompt_seconds: float = 0.0  # how long its prompt takes the engine (in `now`'s units)
    enqueued: float = 0.0
    start_tag: float = 0.0
    state: TicketState = TicketState.NEW

    @property
    def queued(self) -> bool:
        return self.state is TicketState.QUEUED

    @property
    def started(self) -> bool:
        return self.state is TicketState.STARTED


class Admission(Protocol):
    def offer(self, ticket: Ticket, now: float, capacity: float | None = None) -> Verdict: ...
    def done(self, ticket: Ticket, now: float) -> None: ...
    def ready(self, now: float) -> list[Ticket]: ...
    def expired(self, now: float) -> list[Ticket]: ...
    def next_deadline(self) -> float | None: ...
    def next_prompt_end(self, now: float) -> float | None: ...


_Flow = tuple[int, str]  # (class rank, key)


class FairQueue:
    """Weighted fair share across keys, bounded queue and wait, started only while fewer
    than `capacity()` of its tickets are in flight."""

    def __init__(self, capacity: Callable[[], float], *, max_queue: int = 1024,
                 max_per_key: int = 256, max_wait: Mapping[str, float] | None = None,
                 class_order: Iterable[str] = ("interactive", "batch"),
                 class_share: Mapping[str, float] | None = None,
                 class_prompts: Mapping[str, int] | None = None,
                 key_prompts: int | None = None,
                 contended_for: float = CONTENDED_SECONDS) -> None:
        self.capacity = capacity
        self.max_queue = max_queue
        self.max_per_key = max_per_key
        self.max_wait = dict(DEFAULT_WAIT if max_wait is None else max_wait)
        self.class_order = tuple(class_order)
        # The most of capacity() each class's started tickets may hold (unlisted: all of it):
        # what a class below 1 leaves free is a reserve for the others' arrivals.
        self.class_share = dict(class_share or {})
        # The most of a class's tickets computing their prompt at once (unlisted: no bound).
        self.class_prompts = dict(class_prompts or {})
        # A class held back by its share or pacing must not hold back another: each needs a
        # rank of its own (the queue looks at one rank's head at a time).
        alone = set(self.class_share) | set(self.class_prompts)
        if alone - set(self.class_order):
            raise ValueError(f"class_share and class_prompts need their classes in "
                             f"class_order; missing: {sorted(alone - set(self.class_order))}")
        # The most of one key's tickets computing their prompt at once while another key
        # shares the model (None: no bound).
        self.key_prompts = key_prompts
        self._class_prompting = Prompting()
        self._key_prompting = Prompting()
        # `contended_for`: how recently another key must have sent a request (in `now`'s
        # units) for a key to be paced by key_prompts.
        self._contention = Contention(contended_for)
        self._by_class: collections.Counter[str] = collections.Counter()  # started, per class
        self._queued: collections.Counter[int] = collections.Counter()  # waiting, per rank
        self._flows: dict[_Flow, collections.deque[Ticket]] = {}
        self._per_key: collections.Counter[str] = collections.Counter()
        self._finish: dict[_Flow, float] = {}
        self._virtual: dict[int, float] = {}
        self._heads: dict[int, list[tuple[float, int, Ticket]]] = {}  # per rank
        self._arrivals: dict[str, collections.deque[Ticket]] = {}  # per class, for deadlines
        self._seq = itertools.count()
        # key → (decayed cost, as of when): the keys whose starts are in the shares now
        self.recent: dict[str, tuple[float, float]] = {}
        self.size = 0
        self.started = 0
        self.admitted = 0  # started after waiting
        self.rejected = 0
        self.timed_out = 0

    def _rank(self, cls: str) -> int:
        order = self.class_order
        return order.index(cls) if cls in order else len(order)

    def wait_bound(self, cls: str) -> float:
        """How long a ticket of this class may wait (unknown classes: interactive's)."""
        bound = self.max_wait.get(cls)
        return bound if bound is not None else self.max_wait.get("interactive", 0.0)

    def depth(self, key: str | None = None) -> int:
        return self.size if key is None else self._per_key.get(key, 0)

    def offer(self, ticket: Ticket, now: float, capacity: float | None = None) -> Verdict:
        """`capacity`: a reading the caller just took (else capacity() is read)."""
        if ticket.state is not TicketState.NEW:
            raise ValueError("a ticket is offered once")
        ticket.enqueued = now
        if capacity is None:
            capacity = self.capacity()
        paced_keys = self.key_prompts is not None
        if paced_keys:
            self._contention.seen(ticket.key, now)
        if capacity == math.inf and not self.size and ticket.cls not in self.class_prompts \
                and not paced_keys:
            # Unbounded and nothing waits: no order to keep (tags matter once it waits), and
            # no share to count; `_start` written out: this is every request's path.
            ticket.state = TicketState.STARTED
            self.started += 1
            self._by_class[ticket.cls] += 1
            return Verdict.START
        rank = self._rank(ticket.cls)
        if self.started < capacity and self._room(ticket.cls, capacity, now) \
                and self._may_start_now(ticket.key, rank, now, capacity):
            self._tag(ticket, rank)
            self._virtual[rank] = ticket.start_tag
            # Shares are kept only while the model is bounded: an unbounded one has no labels.
            self._start(ticket, now, shared=capacity != math.inf)
            return Verdict.START
        if self.size >= self.max_queue or self._per_key[ticket.key] >= self.max_per_key:
            ticket.state = TicketState.GONE
            self.rejected += 1
            return Verdict.REJECTED
        self._tag(ticket, rank)
        flow = (rank, ticket.key)
        queue = self._flows.get(flow)
        if queue is None:
            queue = self._flows[flow] = collections.deque()
        queue.append(ticket)
        ticket.state = TicketState.QUEUED
        self.size += 1
        self._per_key[ticket.key] += 1
        self._queued[rank] += 1
        self._arrivals.setdefault(ticket.cls, collections.deque()).append(ticket)
        if len(queue) == 1:
            self._push(ticket, rank)
        return Verdict.QUEUED

    def _tag(self, ticket: Ticket, rank: int) -> None:
        flow = (rank, ticket.key)
        start = max(self._virtual.get(rank, 0.0), self._finish.get(flow, 0.0))
        ticket.start_tag = start
        self._finish[flow] = start + ticket.cost / max(ticket.weight, 1e-9)
        if len(self._finish) > _PRUNE_AT:
            self._prune()

    def _prune(self) -> None:
        """Drop finish tags that no longer lead their class's clock: max() ignores them."""
        self._finish = {flow: tag for flow, tag in self._finish.items()
                        if flow in self._flows or tag > self._virtual.get(flow[0], 0.0)}

    def _push(self, head: Ticket, rank: int) -> None:
        heapq.heappush(self._heads.setdefault(rank, []),
                       (head.start_tag, next(self._seq), head))

    def _room(self, cls: str, capacity: float, now: float) -> bool:
        """Whether the class holds less than its share of the capacity, and fewer tickets
        computing their prompt than its pacing allows."""
        share = self.class_share.get(cls)
        if share is not None and self._by_class[cls] >= share * capacity:
            return False
        limit = self.class_prompts.get(cls)
        return limit is None or self._class_prompting.count(cls, now) < limit

    def _key_held(self, key: str, now: float, capacity: float, offered: int = 0) -> bool:
        """Whether `key_prompts` holds the key back: only while the model is saturated (what
        started and waits, and `offered` more, is more than it takes), another key sent it
        a request lately or has one waiting, and the key has its limit of prompts counting.
        Saturation is read each time: a key's own backlog that fits keeps nothing held."""
        limit = self.key_prompts
        if limit is None or self.started + self.size + offered <= capacity:
            return False
        others_wait = len(self._per_key) > (1 if key in self._per_key else 0)
        return ((others_wait or self._contention.contended(key, now))
                and self._key_prompting.count(key, now) >= limit)

    def _may_start_now(self, key: str, rank: int, now: float, capacity: float) -> bool:
        """Whether a new ticket of this key and rank starts without waiting: nothing waits
        at its rank or an earlier one; or, pacing keys, its key is not held and only held
        keys' tickets wait there."""
        if not any(self._queued[r] for r in range(rank + 1)):
            return True
        if self.key_prompts is None or self._key_held(key, now, capacity, offered=1):
            return False
        return all(r > rank or self._key_held(other, now, capacity, offered=1)
                   for r, other in self._flows)

    def next_prompt_end(self, now: float) -> float | None:
        """When the next prompt of a paced class, or of a held key, with tickets waiting is
        done counting (call `ready` then), or None: those done are dropped."""
        ends = [self._class_prompting.next_end(cls, now)
                for cls in self._class_prompting.groups() if self._queued[self._rank(cls)]]
        if self.key_prompts is not None and self._per_key:
            capacity = self.capacity()
            ends += [self._key_prompting.next_end(key, now) for key in list(self._per_key)
                     if self._key_held(key, now, capacity)]
        return min((end for end in ends if end is not None), default=None)

    def _start(self, ticket: Ticket, now: float, shared: bool = True) -> None:
        ticket.state = TicketState.STARTED
        self.started += 1
        self._by_class[ticket.cls] += 1
        if ticket.prompt_seconds > 0:
            end = now + ticket.prompt_seconds
            if ticket.cls in self.class_prompts:
                self._class_prompting.add(ticket.cls, now, end, ticket)
            if self.key_prompts is not None:
                self._key_prompting.add(ticket.key, now, end, ticket)
        if shared:
            self._count_share(ticket, now)

    def done(self, ticket: Ticket, now: float) -> None:
        """A started ticket finished: its slot is free (call `ready`). Once per ticket; a
        queued one is cancelled instead, and anything else is ignored."""
        if ticket.state is TicketState.STARTED:
            ticket.state = TicketState.GONE
            self.started -= 1
            self._by_class[ticket.cls] -= 1
            self._class_prompting.remove(ticket.cls, ticket)
            self._key_prompting.remove(ticket.key, ticket)
        elif ticket.state is TicketState.QUEUED:
            self.cancel(ticket, now)

    def cancel(self, ticket: Ticket, now: float) -> None:
        """Its client went away: out of the queue if it waits, `done` if it started."""
        if ticket.state is TicketState.STARTED:
            self.done(ticket, now)
            return
        if ticket.state is not TicketState.QUEUED:
            return
        rank = self._rank(ticket.cls)
        flow = (rank, ticket.key)
        queue = self._flows[flow]
        head = queue[0] is ticket
        position = queue.index(ticket)
        queue.remove(ticket)
        self._refund(ticket, flow, list(queue)[position:])
        self._leave(ticket, rank, queue)
        if head and queue:
            self._push(queue[0], rank)  # the old heap entry is skipped when it surfaces

    def _refund(self, ticket: Ticket, flow: _Flow, later: list[Ticket]) -> None:
        """A ticket that leaves unserved (expired, its client gone) gives back what it was
        charged: its key's later tickets and next arrivals move up by its cost. Otherwise a
        key whose requests time out under overload falls further behind with each one, and its
        next ones time out too (one of two equal keys ends up with most of the service)."""
        virtual = self._virtual.get(flow[0], 0.0)
        charged = ticket.cost / max(ticket.weight, 1e-9)
        for other in later:
            other.start_tag = max(other.start_tag - charged, virtual)
        if flow in self._finish:
            self._finish[flow] = max(self._finish[flow] - charged, virtual)

    def _leave(self, ticket: Ticket, rank: int, queue: collections.deque[Ticket]) -> None:
        ticket.state = TicketState.GONE
        self.size -= 1
        self._queued[rank] -= 1
        left = self._per_key[ticket.key] - 1
        if left:
            self._per_key[ticket.key] = left
        else:
            del self._per_key[ticket.key]
        if not queue:
            del self._flows[(rank, ticket.key)]

    def ready(self, now: float) -> list[Ticket]:
        """Held tickets started now: classes in order, each while it has room in its share."""
        started: list[Ticket] = []
        for rank in sorted(rank for rank, count in self._queued.items() if count):
            while self._queued[rank]:
                capacity = self.capacity()
                if self.started >= capacity:
                    return started
                ticket = self._pop(rank, now)
                if ticket is None:
                    break
                self._start(ticket, now, shared=capacity != math.inf)
                self.admitted += 1
                started.append(ticket)
        return started

    def _pop(self, rank: int, now: float) -> Ticket | None:
        """The rank's next ticket in fair order whose key is not held by `key_prompts`, or
        None if there is none or its class is at its share or its pacing."""
        heads = self._heads[rank]
        capacity = self.capacity()
        held: list[tuple[float, int, Ticket]] = []
        try:
            while heads:
                _, _, ticket = heads[0]
                queue = self._flows.get((rank, ticket.key))
                if not (ticket.state is TicketState.QUEUED and queue and queue[0] is ticket):
                    heapq.heappop(heads)  # an old entry: the ticket left or is not the head
                elif not self._room(ticket.cls, capacity, now):
                    return None
                elif self._key_held(ticket.key, now, capacity):
                    held.append(heapq.heappop(heads))
                else:
                    heapq.heappop(heads)
                    break
            else:
                return None
        finally:
            for entry in held:
                heapq.heappush(heads, entry)
        assert queue is not None
        queue.popleft()
        self._leave(ticket, rank, queue)
        self._virtual[rank] = max(self._virtual.get(rank, 0.0), ticket.start_tag)
        if queue:
            self._push(queue[0], rank)
        return ticket

    def expired(self, now: float) -> list[Ticket]:
        gone: list[Ticket] = []
        for cls, arrivals in self._arrivals.items():
            bound = self.wait_bound(cls)
            while arrivals and (arrivals[0].state is not TicketState.QUEUED
                                or now - arrivals[0].enqueued > bound):
                ticket = arrivals.popleft()
                if ticket.state is TicketState.QUEUED:
                    self.cancel(ticket, now)
                    gone.append(ticket)
        self.timed_out += len(gone)
        return gone

    def next_deadline(self) -> float | None:
        deadlines = []
        for cls, arrivals in self._arrivals.items():
            while arrivals and arrivals[0].state is not TicketState.QUEUED:
                arrivals.popleft()
            if arrivals:
                deadline = arrivals[0].enqueued + self.wait_bound(cls)
                if deadline != math.inf:
                    deadlines.append(deadline)
        return min(deadlines, default=None)

    def _count_share(self, ticket: Ticket, now: float) -> None:
        value, then = self.recent.get(ticket.key, (0.0, now))
        self.recent[ticket.key] = (_decayed(value, now - then) + ticket.cost, now)

    def shares(self, now: float) -> dict[str, float]:
        """Each key's share of the cost started recently (decayed over SHARE_HALF_LIFE of
        `now`'s time), summing to 1; keys whose share faded away are forgotten."""
        values = {key: _decayed(value, now - then)
                  for key, (value, then) in self.recent.items()}
        for key, value in values.items():
            if value < _FADED:
                del self.recent[key]
        total = sum(value for value in values.values() if value >= _FADED)
        return {key: value / total for key, value in values.items() if value >= _FADED}

    def waiting(self) -> dict[tuple[str, str], int]:
        """Tickets waiting per (class, key)."""
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        for queue in self._flows.values():
            for ticket in queue:
                counts[(ticket.cls, ticket.key)] += 1
        return dict(counts)


def _decayed(value: float, elapsed: float) -> float:
    return value * math.pow(0.5, max(elapsed, 0.0) / SHARE_HALF_LIFE)
