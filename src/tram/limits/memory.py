"""In-process limits (one gateway process): sliding one-minute windows, a concurrency counter,
and token budgets whose starting point is the usage already recorded in the store.

Admission happens before the engine is called (a budget's counter is re-read from the store
every `RELOAD` seconds); tokens are counted when the engine has reported
them (the request's usage), so tpm and budgets follow real usage, not estimates. Everything
after the (rare) store read is synchronous, so admission is atomic on the event loop.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from tram.errors import StoreUnavailable
from tram.limits.base import (
    KeyLimits,
    RecordedTokens,
    Ticket,
    budgets_of,
    quota_error,
    rate_limit_error,
)

__all__ = ["MemoryLimiter"]

WINDOW = 60.0
# Budget counters are read again from the store this often (seconds). The store holds every
# process's usage, so several workers without Redis still converge on one budget (each one
# overshoots by at most what the others spent in this interval).
RELOAD = 30.0


@dataclass
class _KeyState:
    requests: collections.deque[float] = field(default_factory=collections.deque)
    tokens: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    tokens_in_window: int = 0
    in_flight: int = 0
    reserved: int = 0
    used: dict[str, int] = field(default_factory=dict)  # budget field -> tokens used
    loaded: dict[str, float] = field(default_factory=dict)  # budget field -> when read


class MemoryLimiter:
    def __init__(self, recorded: RecordedTokens,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._recorded = recorded
        self._clock = clock
        self._wall_clock = wall_clock
        self._keys: dict[str, _KeyState] = {}
        self._leases = itertools.count()

    def _state(self, key_id: str) -> _KeyState:
        state = self._keys.get(key_id)
        if state is None:
            state = self._keys[key_id] = _KeyState()
        return state

    def _expire(self, state: _KeyState, now: float) -> None:
        while state.requests and state.requests[0] <= now - WINDOW:
            state.requests.popleft()
        while state.tokens and state.tokens[0][0] <= now - WINDOW:
            state.tokens_in_window -= state.tokens.popleft()[1]

    async def admit(self, key_id: str, limits: KeyLimits, reserve: int) -> Ticket:
        state = self._state(key_id)
        # The date matters only to a budget per period (reading the wall clock is not free).
        budgets = budgets_of(limits, self._wall_clock() if limits.budget_tokens else None)
        for budget in budgets:
            loaded = state.loaded.get(budget.field)
            if loaded is None or self._clock() - loaded > RELOAD:
                try:
                    recorded = await self._recorded(key_id, budget.since)
                except (SQLAlchemyError, OSError):
                    if budget.field in state.used:
                        continue  # keep counting on the last value while the store is down
                    raise StoreUnavailable("The usage store is unavailable, so this key's "
                                           "budget cannot be checked; try again shortly.") from None
                if state.loaded.get(budget.field) == loaded:  # not reloaded meanwhile
                    state.used[budget.field] = recorded
                    state.loaded[budget.field] = self._clock()
                # Counters of past periods are no longer needed.
                for stale in [f for f in state.used if f not in {b.field for b in budgets}]:
                    del state.used[stale]
                    state.loaded.pop(stale, None)
        for budget in budgets:
            if state.used[budget.field] + state.reserved >= budget.limit:
                raise quota_error(budget)
        now = self._clock()
        self._expire(state, now)
        if limits.max_concurrency is not None and state.in_flight >= limits.max_concurrency:
            raise rate_limit_error("concurrency", limits, 1)
        if limits.rpm is not None and len(state.requests) >= limits.rpm:
            raise rate_limit_error("rpm", limits, math.ceil(state.requests[0] + WINDOW - now))
        if limits.tpm is not None and state.tokens_in_window + state.reserved >= limits.tpm:
            wait = state.tokens[0][0] + WINDOW - now if state.tokens else WINDOW
            raise rate_limit_error("tpm", limits, math.ceil(wait))
        state.requests.append(now)
        state.in_flight += 1
        reserve = reserve if budgets or limits.tpm is not None else 0
        state.reserved += reserve
        return Ticket(key_id, str(next(self._leases)), reserve,
                      tuple(b.field for b in budgets),
                      counts_tokens=limits.tpm is not None or bool(budgets))

    async def release(self, ticket: Ticket, tokens: int) -> None:
        self.release_now(ticket, tokens)

    def release_now(self, ticket: Ticket, tokens: int) -> None:
        state = self._state(ticket.key_id)
        state.in_flight -= 1
        state.reserved -= ticket.reserve
        if tokens <= 0:
            return
        state.tokens.append((self._clock(), tokens))
        state.tokens_in_window += tokens
        for name in ticket.budgets:
            if name in state.used:
                state.used[name] += tokens

    async def run(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
