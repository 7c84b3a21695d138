"""What every limiter shares: a key's limits, budget periods, the admission ticket, and the
small interface the chat endpoint uses (admit before the engine, release after the answer).

Budgets and tpm count the tokens the engine reported. At admission, the requests already in
flight count as what they may still cost (`reserve`: an estimate of the prompt plus the
completion ceiling, the request's max_tokens, else the model's default), so a burst of
concurrent requests cannot all be admitted on the last few tokens of a budget or a minute; a
budget can still be overshot by what one admitted request really uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tram.errors import InsufficientQuota, RateLimited
from tram.protocol.keys import Period

__all__ = [
    "DEFAULT_BUDGET_PERIOD",
    "Budget",
    "KeyLimits",
    "Limiter",
    "Period",
    "RecordedTokens",
    "Ticket",
    "budgets_of",
    "period_start",
    "quota_error",
    "rate_limit_error",
]

# A budget whose period is not named renews monthly: keys administration (keys/service.py)
# stores it with every budget; the limiter reads it for keys stored before that.
DEFAULT_BUDGET_PERIOD: Period = "month"

# Tokens used by a key since a time (None: ever), as recorded in the store.
RecordedTokens = Callable[[str, dt.datetime | None], Awaitable[int]]


@dataclass(frozen=True)
class KeyLimits:
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    max_total_tokens: int | None = None  # hard budget over the key's whole life
    budget_tokens: int | None = None  # budget per period (renews at the period's start, UTC)
    budget_period: Period | None = None

    def any(self) -> bool:
        return (self.rpm is not None or self.tpm is not None
                or self.max_concurrency is not None or self.max_total_tokens is not None
                or self.budget_tokens is not None)


@dataclass(frozen=True)
class Budget:
    """One budget to check: `field` names the counter ("total" or e.g. "month:2026-11-01")."""

    field: str
    limit: int
    since: dt.datetime | None  # start of the period; None for the all-time budget
    renews: dt.datetime | None


def period_start(period: Period, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The UTC start of the period holding `now`, and the start of the next one."""
    day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + dt.timedelta(days=1)
    if period == "week":  # ISO weeks start on Monday
        start = day - dt.timedelta(days=day.weekday())
        return start, start + dt.timedelta(days=7)
    start = day.replace(day=1)
    following = (start.replace(year=start.year + 1, month=1) if start.month == 12
                 else start.replace(month=start.month + 1))
    return start, following


def budgets_of(limits: KeyLimits, now: dt.datetime | None = None) -> list[Budget]:
    budgets = []
    if limits.max_total_tokens is not None:
        budgets.append(Budget("total", limits.max_total_tokens, None, None))
    if limits.budget_tokens is not None:
        period = limits.budget_period or DEFAULT_BUDGET_PERIOD
        start, renews = period_start(period, now or dt.datetime.now(dt.UTC))
        budgets.append(Budget(f"{period}:{start.date().isoformat()}", limits.budget_tokens,
                              start, renews))
    return budgets


_ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}


def quota_error(budget: Budget) -> InsufficientQuota:
    if budget.renews is None:
        return InsufficientQuota(f"This key has used its budget of {budget.limit} tokens.")
    period = _ADJECTIVE[budget.field.split(":", 1)[0]]
    return InsufficientQuota(
        f"This key has used its {period} budget of {budget.limit} tokens; it renews at "
        f"{budget.renews.isoformat().replace('+00:00', 'Z')}.")


def rate_limit_error(which: str, limits: KeyLimits, retry_after: int) -> RateLimited:
    """`which`: the limit that was hit, "concurrency", "rpm" or "tpm"."""
    if which == "concurrency":
        return RateLimited(f"This key already has {limits.max_concurrency} requests in "
                           "flight, its limit.", retry_after=1)
    if which == "rpm":
        return RateLimited(f"Rate limit of {limits.rpm} requests per minute reached.",
                           retry_after=retry_after)
    return RateLimited(f"Rate limit of {limits.tpm} tokens per minute reached.",
                       retry_after=retry_after)


@dataclass
class Ticket:
    """One admitted request; handed back to `release` with the tokens it used."""

    key_id: str
    lease: str
    reserve: int
    budgets: tuple[str, ...]
    counts_tokens: bool  # the key has a tpm limit or a budget
    local: bool = True  # admitted by the in-process limiter (also Redis's fail-open path)


class Limiter(Protocol):
    async def admit(self, key_id: str, limits: KeyLimits, reserve: int) -> Ticket:
        """Raise RateLimited / InsufficientQuota (429) if the request may not start."""

    async def release(self, ticket: Ticket, tokens: int) -> None:
        """The request is over and used `tokens` (as the engine reported them)."""

    async def run(self) -> None:
        """Background upkeep for the life of the app (may return at once)."""

    async def aclose(self) -> None: ...
