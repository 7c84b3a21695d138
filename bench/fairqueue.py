"""The gateway's fair queue for the simulated gateway (bench/fleet_des.py, bench/fairness.py):
the product's own (src/tram/sharing/fairqueue.py), so the benches measure the real code.

The interface is synchronous and clock-free, so one implementation runs under the
discrete-event fleet's virtual clock and under the gateway's asyncio loop:

    verdict = queue.offer(ticket, now)   # START: route it now; QUEUED: hold it; REJECTED: 429
    queue.done(ticket, now)              # a started request finished (or failed)
    for ticket in queue.ready(now): …    # held tickets started now, in fair order
    for ticket in queue.expired(now): …  # held tickets past their wait bound: refuse (429)
    queue.next_deadline()                # when to call expired() next (a timer), or None
    queue.next_prompt_end(now)           # when a paced class may start again (a timer), or None

The pitfall the first version of this file fell into, kept here for whoever changes either:
the queue counts what it started at the moment it starts it, not when the request reaches
the pool's in-flight count; under asyncio (and in the simulator) the request resumes later,
and a queue that read the pool's count would start its whole backlog before any of it
arrived (the engines' own FIFO queues took the backlog and fairness was lost). The replica
chosen for a started ticket must be one under its cap, read the same way as `capacity()`.

The simulated gateway's ticket `cost` is max_tokens + prompt tokens / 12 (a decode token holds
a batch slot for a step, ~0.7 ms of engine time at a full batch; a prompt token costs 0.06 ms
once). Its defaults differ from the gateway's: no class order unless asked (fair share across
keys only) and an interactive wait bound the simulator never reaches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from tram.sharing.fairqueue import Admission, Ticket, Verdict
from tram.sharing.fairqueue import FairQueue as _ProductQueue
from tram.sharing.pacing import CONTENDED_SECONDS

__all__ = ["Admission", "FairQueue", "Ticket", "Verdict"]


class FairQueue(_ProductQueue):
    """The product's queue with the simulator's defaults."""

    def __init__(self, capacity: Callable[[], float], max_queue: int = 1024,
                 max_per_key: int = 256, max_wait: Mapping[str, float] | None = None,
                 class_order: Iterable[str] = (),
                 class_share: Mapping[str, float] | None = None,
                 class_prompts: Mapping[str, int] | None = None,
                 key_prompts: int | None = None) -> None:
        super().__init__(capacity, max_queue=max_queue, max_per_key=max_per_key,
                         max_wait=max_wait if max_wait is not None else
                         {"interactive": 30_000.0, "batch": float("inf")},
                         class_order=class_order, class_share=class_share,
                         class_prompts=class_prompts, key_prompts=key_prompts,
                         contended_for=CONTENDED_SECONDS * 1000)  # the DES's clock: ms
