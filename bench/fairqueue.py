"""A gateway-side fair queue, for the simulated gateway (bench/fleet_des.py): the interface a
real one in the gateway should keep, and a reference implementation to validate the simulator.

The interface is synchronous and clock-free, so one implementation can run under the
discrete-event fleet's virtual clock and under the gateway's asyncio loop:

    verdict = queue.offer(ticket, now)   # START: route it now; QUEUED: hold it; REJECTED: 429
    queue.done(ticket, now)              # a started request finished (or failed)
    for ticket in queue.ready(now): …    # held tickets that may start now, in fair order
    for ticket in queue.expired(now): …  # held tickets past their wait bound: refuse (429)
    queue.next_deadline()                # when to call expired() next (a timer), or None

`saturated()`, given by the gateway, says whether the engines can take one more request now
(`max_in_flight` reached, or every replica's queue is over its bound as the engines report
it); the queue asks it before it starts anything. The gateway's asyncio side would be: a
future in `ticket.item` awaited by the request, resolved by `ready()` after `done()` or after
a scrape, failed by `expired()` from a timer armed at `next_deadline()`.

The reference policy is start-time fair queuing (Goyal et al., 1996) over keys: each key's
tickets wait in arrival order; a ticket's start tag is max(virtual time, its key's last
finish tag), its finish tag the start plus cost / weight; the ticket with the smallest start
tag goes first and the virtual time moves to it. A key that was idle does not bank credit.
The queue is bounded in total and per key, and a ticket waits at most its class's bound.
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
    """Weighted fair share across keys, bounded queue and wait, started only when the
    engines are not saturated."""

    saturated: Callable[[], bool]
    max_queue: int = 1024
    max_per_key: int = 256
    max_wait: Mapping[str, float] = field(default_factory=lambda: {"interactive": 30_000.0,
                                                                   "batch": float("inf")})
    virtual: float = 0.0
    _keys: dict[str, collections.deque[Ticket]] = field(default_factory=dict)
    _finish: dict[str, float] = field(default_factory=dict)
    _heads: list[tuple[float, int, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    size: int = 0
    rejected: int = 0
    timed_out: int = 0

    def offer(self, ticket: Ticket, now: float) -> Verdict:
        ticket.enqueued = now
        if self.size == 0 and not self.saturated():
            self._tag(ticket)
            self.virtual = ticket.start_tag
            return Verdict.START
        queue = self._keys.setdefault(ticket.key, collections.deque())
        if self.size >= self.max_queue or len(queue) >= self.max_per_key:
            self.rejected += 1
            return Verdict.REJECTED
        self._tag(ticket)
        queue.append(ticket)
        self.size += 1
        if len(queue) == 1:
            heapq.heappush(self._heads, (ticket.start_tag, next(self._seq), ticket.key))
        return Verdict.QUEUED

    def _tag(self, ticket: Ticket) -> None:
        start = max(self.virtual, self._finish.get(ticket.key, 0.0))
        ticket.start_tag = start
        self._finish[ticket.key] = start + ticket.cost / max(ticket.weight, 1e-9)

    def done(self, ticket: Ticket, now: float) -> None:
        """Nothing to account: the engines' load is what `saturated` reads."""

    def ready(self, now: float) -> list[Ticket]:
        started = []
        while self._heads and not self.saturated():
            started.append(self._pop())
        return started

    def _pop(self) -> Ticket:
        _, _, key = heapq.heappop(self._heads)
        queue = self._keys[key]
        ticket = queue.popleft()
        self.size -= 1
        self.virtual = max(self.virtual, ticket.start_tag)
        if queue:
            heapq.heappush(self._heads, (queue[0].start_tag, next(self._seq), key))
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
            self._heads = [(q[0].start_tag, next(self._seq), k) for k, q in self._keys.items()]
            heapq.heapify(self._heads)
        return gone

    def next_deadline(self) -> float | None:
        bounds = [t.enqueued + self.max_wait.get(t.cls, 0.0)
                  for queue in self._keys.values() for t in queue]
        finite = [b for b in bounds if b != float("inf")]
        return min(finite) if finite else None
