"""The asyncio side of one model's fair queue: a request `enter`s (at once while the model has
room, else it waits on a future in fair order), and `leave`s exactly once when its engine hold
is released; a timer refuses what waited past its class's bound. Times are time.monotonic()'s
(the loop's clock may have another origin; /metrics reads the shares outside it).

A request that starts gets its slot counted at that moment (sharing/fairqueue.py); a waiting
request's future is resolved by `ready()` after a `leave` or a timer tick, failed with 429
`model_overloaded` by `expired()`. A client that goes away while waiting leaves the queue;
one whose future was resolved as it went away gives the slot back.

A class paced by `class_prompts` (or a key by `key_prompts`) waits for a prompt to be done
counting: the timer also wakes then. While anything waits the timer also ticks every `RECHECK`
seconds: the model's capacity can grow without a request finishing (the engines' queue
drained, a reload raised max_in_flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from tram.config import QueueConfig
from tram.errors import ModelOverloaded
from tram.sharing.fairqueue import FairQueue, Ticket, TicketState, Verdict

__all__ = ["RECHECK", "Gate", "KeyShare"]

RECHECK = 1.0


@dataclass(frozen=True)
class KeyShare:
    key: str
    share: float  # of the cost started recently
    weight: float  # as last seen
    waiting: int
    cls: str = "interactive"  # its class, as last seen


class Gate:
    """One model's queue. `capacity()`: how many requests its engines take at once now
    (math.inf: no bound, and then only a class paced by `class_prompts` waits)."""

    def __init__(self, model: str, capacity: Callable[[], float], settings: QueueConfig,
                 on_wait: Callable[[str, float], None] | None = None,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.model = model
        self.queue = FairQueue(capacity, max_queue=settings.max_queue,
                               max_per_key=settings.max_per_key,
                               max_wait=settings.max_wait_seconds,
                               class_share=settings.class_share,
                               class_prompts=settings.class_prompts,
                               key_prompts=settings.key_prompts)
        self._on_wait = on_wait
        self._on_refused = on_refused
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self.weights: dict[str, float] = {}
        self.classes: dict[str, str] = {}
        # Seconds between two requests giving their slot back (decayed): how fast the queue
        # drains, for a refused client's Retry-After.
        self._gap: float | None = None
        self._last_done: float | None = None

    def configure(self, settings: QueueConfig) -> None:
        """New bounds (a reload): what waits keeps its place."""
        self.queue.max_queue = settings.max_queue
        self.queue.max_per_key = settings.max_per_key
        self.queue.max_wait = dict(settings.max_wait_seconds)
        self.queue.class_share = dict(settings.class_share)
        self.queue.class_prompts = dict(settings.class_prompts)
        self.queue.key_prompts = settings.key_prompts
        if self.queue.size:  # a share or pacing lifted: what waits for it may start now
            with contextlib.suppress(RuntimeError):  # no running loop: the next tick will
                self._start_ready(asyncio.get_running_loop())

    async def enter(self, key: str, weight: float, cls: str, cost: float,
                    capacity: float | None = None, prompt_seconds: float = 0.0) -> Ticket:
        """A started ticket, for `leave`; ModelOverloaded (429) if the queue is full or the
        wait ran past its bound. `capacity`: the caller's reading of it, if it has one;
        `prompt_seconds`: how long the engine computes its prompt (a paced class's)."""
        ticket = self.offer(key, weight, cls, cost, capacity, prompt_seconds)
        if not ticket.started:
            await self.wait(ticket)
        return ticket

    def offer(self, key: str, weight: float, cls: str, cost: float,
              capacity: float | None = None, prompt_seconds: float = 0.0) -> Ticket:
        """`enter` without the wait: the ticket started now, or queued (then `wait` for it);
        ModelOverloaded if the queue is full. No await: the usual request passes through
        without a coroutine of its own."""
        ticket = Ticket(key, weight, cls, cost=cost, prompt_seconds=prompt_seconds)
        verdict = self.queue.offer(ticket, time.monotonic(), capacity)
        if verdict is Verdict.START:
            if key in self.queue.recent:  # its share is shown: with its weight and class
                self.weights[key], self.classes[key] = weight, cls
            return ticket
        self.weights[key], self.classes[key] = weight, cls
        if verdict is Verdict.REJECTED:
            if self._on_refused is not None:
                self._on_refused("queue_full")
            raise ModelOverloaded(f"The model '{self.model}' is saturated and its queue is "
                                  "full; retry shortly.", retry_after=self.retry_after())
        loop = asyncio.get_running_loop()
        ticket.item = loop.create_future()
        self._arm(loop)
        return ticket

    async def wait(self, ticket: Ticket) -> None:
        """Until a queued ticket starts; ModelOverloaded (429) if it waits past its class's
        bound. A waiter that goes away leaves the queue (or gives back the slot it was just
        given)."""
        future = ticket.item
        assert isinstance(future, asyncio.Future)
        try:
            await future
        except BaseException:
            if ticket.started:  # resolved as its client went away: give the slot back
                self.leave(ticket)
            else:
                self.queue.cancel(ticket, time.monotonic())
            raise
        if self._on_wait is not None:
            self._on_wait(ticket.cls, time.monotonic() - ticket.enqueued)

    def leave(self, ticket: Ticket) -> None:
        """Its request no longer holds an engine; idempotent."""
        if ticket.state is not TicketState.STARTED:
            return
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        self.queue.done(ticket, now)
        if self._last_done is not None:
            gap = now - self._last_done
            self._gap = gap if self._gap is None else 0.9 * self._gap + 0.1 * gap
        self._last_done = now
        if self.queue.size:
            self._start_ready(loop)

    def retry_after(self) -> int:
        """Seconds until the requests waiting now have likely started, at the pace slots
        were given back lately (1 to 60): a client told 1 under a deep queue only comes back
        to be refused again."""
        gap = self._gap if self._gap is not None else 1.0
        return max(1, min(60, math.ceil(round((self.queue.size + 1) * gap, 1))))

    def _start_ready(self, loop: asyncio.AbstractEventLoop) -> None:
        for started in self.queue.ready(time.monotonic()):
            future = started.item
            if isinstance(future, asyncio.Future) and not future.done():
                future.set_result(None)
            # else its waiter was cancelled at this moment: it sees `started` and leaves
        if self.queue.size:  # a paced class's next start may be due before the timer
            self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        at = now + RECHECK
        for deadline in (self.queue.next_deadline(), self.queue.next_prompt_end(now)):
            if deadline is not None:
                at = min(at, deadline + 0.001)
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_later(at - now, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        for late in self.queue.expired(time.monotonic()):
            if self._on_refused is not None:
                self._on_refused("queue_timeout")
            future = late.item
            if isinstance(future, asyncio.Future) and not future.done():
                bound = self.queue.wait_bound(late.cls)
                future.set_exception(ModelOverloaded(
                    f"The model '{self.model}' is saturated: this request waited {bound:g}s "
                    "for a slot, its class's bound; retry shortly.",
                    retry_after=self.retry_after()))
        self._start_ready(loop)  # and re-arms the timer while anything waits

    def shares(self, now: float) -> list[KeyShare]:
        """Each key's share of recent starts, weight, requests waiting and class (the
        console's)."""
        shares = self.queue.shares(now)
        waiting: dict[str, int] = {}
        for (_, key), count in self.queue.waiting().items():
            waiting[key] = waiting.get(key, 0) + count
        for key in [key for key in self.weights if key not in shares and key not in waiting]:
            del self.weights[key]
            self.classes.pop(key, None)
        keys = sorted(set(shares) | set(waiting))
        return [KeyShare(key, shares.get(key, 0.0), self.weights.get(key, 1.0),
                         waiting.get(key, 0), self.classes.get(key, "interactive"))
                for key in keys]
