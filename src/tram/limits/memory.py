"""In-process limits (one gateway process): sliding one-minute windows, a concurrency counter,
and a token budget whose starting point is the usage already recorded in the store.

Admission happens before the engine is called; tokens are counted when the engine has reported
them (the request's usage), so tpm and budgets follow real usage, not estimates.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tram.errors import InsufficientQuota, RateLimited

__all__ = ["KeyLimits", "Limiter"]

WINDOW = 60.0


@dataclass(frozen=True)
class KeyLimits:
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    max_total_tokens: int | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_concurrency,
                                           self.max_total_tokens))


@dataclass
class _KeyState:
    requests: collections.deque[float] = field(default_factory=collections.deque)
    tokens: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    tokens_in_window: int = 0
    in_flight: int = 0
    total_tokens: int | None = None  # loaded from the store on first use


class Limiter:
    def __init__(self, recorded_total: Callable[[str], Awaitable[int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._recorded_total = recorded_total
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}

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

    async def check(self, key_id: str, limits: KeyLimits) -> None:
        """Raise a 429 if a new request would break a limit; otherwise count it."""
        state = self._state(key_id)
        if limits.max_total_tokens is not None:
            if state.total_tokens is None:
                state.total_tokens = await self._recorded_total(key_id)
            if state.total_tokens >= limits.max_total_tokens:
                raise InsufficientQuota(
                    f"This key has used its budget of {limits.max_total_tokens} tokens.")
        now = self._clock()
        self._expire(state, now)
        if limits.max_concurrency is not None and state.in_flight >= limits.max_concurrency:
            raise RateLimited(f"This key already has {limits.max_concurrency} requests in "
                              "flight, its limit.", retry_after=1)
        if limits.rpm is not None and len(state.requests) >= limits.rpm:
            wait = state.requests[0] + WINDOW - now
            raise RateLimited(f"Rate limit of {limits.rpm} requests per minute reached.",
                              retry_after=math.ceil(wait))
        if limits.tpm is not None and state.tokens_in_window >= limits.tpm:
            wait = state.tokens[0][0] + WINDOW - now if state.tokens else WINDOW
            raise RateLimited(f"Rate limit of {limits.tpm} tokens per minute reached.",
                              retry_after=math.ceil(wait))
        state.requests.append(now)

    @contextmanager
    def in_flight(self, key_id: str) -> Iterator[None]:
        state = self._state(key_id)
        state.in_flight += 1
        try:
            yield
        finally:
            state.in_flight -= 1

    def add_tokens(self, key_id: str, tokens: int) -> None:
        """Count the tokens an engine reported for a finished request."""
        if tokens <= 0:
            return
        state = self._state(key_id)
        state.tokens.append((self._clock(), tokens))
        state.tokens_in_window += tokens
        if state.total_tokens is not None:
            state.total_tokens += tokens
