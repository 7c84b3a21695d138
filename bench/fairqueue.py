"""A gateway-side fair queue, for the simulated gateway (bench/fleet_des.py): the interface a
real one in the gateway should keep, and a reference implementation to validate the simulator.

The interface is synchronous and clock-free, so one implementation can run under the
discrete-event fleet's virtual clock and under the gateway's asyncio loop:

    verdict = queue.offer(ticket, now)   # START: route it now; QUEUED: hold it; REJECTED: 429
    queue.done(ticket, now)              # a started request finished (or failed)
    for ticket in queue.ready(now): …    # held tickets started now, in fair order
    for ticket in queue.expired(now): …  # held tickets past their wait bound: refuse (429)
    queue.next_deadline()                # when to call expired() next (a timer), or None

The queue counts what it started until `done`, and starts a ticket only while that count is
under `capacity()`, given by the gateway: how many requests the engines can take at once
(`max_in_flight`, or each replica's cap less the queue its engine reports). It counts at the
moment it starts a ticket, not when the request reaches the pool's in-flight count: under
asyncio the request resumes later, and a queue that read the pool's count would start its
whole backlog before any of it arrived (the first version of this file did, in the
simulator: the engines' own FIFO queues took the backlog and fairness was lost). The
gateway's asyncio side would be: a future in `ticket.item` awaited by the request, resolved
by `ready()` after `done()` or after a scrape, failed by `expired()` from a timer armed at
`next_deadline()`; and the replica chosen for a started ticket must be one under its cap.

The reference policy is start-time fair queuing (Goyal et al., 1996) over keys: each key's
tickets wait in arrival order; a ticket's start tag is max(virtual time, its key's last
finish tag), its finish tag the start plus cost / weight; the ticket with the smallest start
tag goes first and the virtual time moves to it. A key that was idle does not bank credit.
With `class_order`, classes are served in that order (strictly) and keys share within one.
The queue is bounded in total and per key, and a ticket waits at most its class's bound.
A ticket's `cost` is the caller's estimate of what it occupies; the simulated gateway uses
max_tokens + prompt tokens / 12 (a decode token holds a batch slot for a step, ~0.7 ms of
engine time at a full batch; a prompt token costs 0.06 ms once).
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Admission", "FairQueue", "Ticket", "Verdict"]


class Verdict(enum.Enum):
    START = "start"
    QUEUED = "queued"
    REJECTED = "rejected"


@dataclass(eq=False)
class Ticket:
    key: str  # who sends it: a virtual key's id
    weight: float = 1.0  # the key's share
    cls: str = "interactive"  # its class: a wait bound each
    item: Any = None  # what the caller holds for it (a request, a future)
    cost: float = 1.0  # its size in the fair share (requests, or estimated tokens)
    enqueued: float = 0.0
    start_tag: float = 0.0


class Admission(Protocol):
    def offer(self, ticket: Ticket, now: float) -> Verdict: ...
    def done(self, ticket: Ticket, now: float) -> None: ...
    def ready(self, now: float) -> list[Ticket]: ...
    def expired(self, now: float) -> list[Ticket]: ...
    def next_deadline(self) -> float | None: ...


@dataclass
class FairQueue:
    """Weighted fair share across keys, bounded queue and wait, started only while fewer
    than `capacity()` of its tickets are in flight. With `class_order`, a class before
    another goes first (interactive before batch); keys share within a class."""

    capacity: Callable[[], float]
    max_queue: int = 1024
    max_per_key: int = 256
    max_wait: Mapping[str, float] = field(default_factory=lambda: {"interactive": 30_000.0,
                                                                   "batch": float("inf")})
    class_order: tuple[str, ...] = ()
    _keys: dict[str, collections.deque[Ticket]] = field(default_factory=dict)
    _finish: dict[str, float] = field(default_factory=dict)
    _virtual: dict[int, float] = field(default_factory=dict)  # per class rank
    _heads: list[tuple[int, float, int, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    size: int = 0
    started: int = 0
    rejected: int = 0
    timed_out: int = 0

    def _rank(self, ticket: Ticket) -> int:
        order = self.class_order
        return order.index(ticket.cls) if ticket.cls in order else len(order)

    def offer(self, ticket: Ticket, now: float) -> Verdict:
        ticket.enqueued = now
        if self.size == 0 and self.started < self.capacity():
            self._tag(ticket)
            self._virtual[self._rank(ticket)] = ticket.start_tag
            self.started += 1
            return Verdict.START
        queue = self._keys.setdefault(ticket.key, collections.deque())
        if self.size >= self.max_queue or len(queue) >= self.max_per_key:
            if not queue:
                del self._keys[ticket.key]
            self.rejected += 1
            return Verdict.REJECTED
        self._tag(ticket)
        queue.append(ticket)
        self.size += 1
        if len(queue) == 1:
            self._push(ticket)
        return Verdict.QUEUED

    def _tag(self, ticket: Ticket) -> None:
        start = max(self._virtual.get(self._rank(ticket), 0.0),
                    self._finish.get(ticket.key, 0.0))
        ticket.start_tag = start
        self._finish[ticket.key] = start + ticket.cost / max(ticket.weight, 1e-9)

    def _push(self, head: Ticket) -> None:
        heapq.heappush(self._heads, (self._rank(head), head.start_tag, next(self._seq),
                                     head.key))

    def done(self, ticket: Ticket, now: float) -> None:
        self.started -= 1

    def ready(self, now: float) -> list[Ticket]:
        started = []
        while self._heads and self.started < self.capacity():
            started.append(self._pop())
            self.started += 1
        return started

    def _pop(self) -> Ticket:
        rank, _, _, key = heapq.heappop(self._heads)
        queue = self._keys[key]
        ticket = queue.popleft()
        self.size -= 1
        self._virtual[rank] = max(self._virtual.get(rank, 0.0), ticket.start_tag)
        if queue:
            self._push(queue[0])
        else:
            del self._keys[key]
        return ticket

    def expired(self, now: float) -> list[Ticket]:
        gone = []
        for key in list(self._keys):
            queue = self._keys[key]
            kept = collections.deque(t for t in queue
                                     if now - t.enqueued <= self.max_wait.get(t.cls, 0.0))
            if len(kept) == len(queue):
                continue
            gone += [t for t in queue if t not in kept]
            self.size -= len(queue) - len(kept)
            if kept:
                self._keys[key] = kept
            else:
                del self._keys[key]
        if gone:
            self.timed_out += len(gone)
            self._heads = []
            for queue in self._keys.values():
                self._push(queue[0])
        return gone

    def next_deadline(self) -> float | None:
        bounds = [t.enqueued + self.max_wait.get(t.cls, 0.0)
                  for queue in self._keys.values() for t in queue]
        finite = [b for b in bounds if b != float("inf")]
        return min(finite) if finite else None
