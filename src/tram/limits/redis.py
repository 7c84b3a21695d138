"""Limits shared by every gateway process and host, in Redis.

One Lua script per admission and one per release, so each is atomic and one round trip:
- rpm: a sorted set of admission times (exact sliding minute);
- tpm: tokens in one-second buckets of a hash (a sliding minute to the second);
- concurrency and budget reservations: a sorted set of leases scored by their expiry. Each
  process renews its leases every few seconds, so the leases of a killed gateway disappear
  within `lease_ttl` instead of blocking the key;
- budgets: a hash of counters ("total", "month:2026-11-01"…), loaded from the store the first
  time (HSETNX, so concurrent loaders agree) and then counted in Redis.
Times come from Redis (`TIME`), so hosts with skewed clocks share one window.

When Redis cannot be reached, `on_error` decides: "open" (the default) keeps serving with the
in-process limiter, so each process enforces the limits on its own share of the traffic;
"closed" refuses requests from limited keys with a 503. Either way Redis is tried again after
`retry_after` seconds, not on every request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from typing import Any, Literal

from tram.errors import LimitsUnavailable, StoreUnavailable
from tram.limits.base import (
    Budget,
    KeyLimits,
    RecordedTokens,
    Ticket,
    budgets_of,
    quota_error,
    rate_limit_error,
)
from tram.limits.memory import MemoryLimiter
from tram.transport.resp import RedisUnavailable, ReplyError, RespClient, Script

__all__ = ["RedisLimiter"]

logger = logging.getLogger("tram.limits")

_ADMIT = Script("""
local req, tok, lease, budget = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local member, ttl, reserve = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local nbudgets = tonumber(ARGV[7])
local leases = {}
local reserved = 0
if conc > 0 or nbudgets > 0 or tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', lease, '-inf', now)
  leases = redis.call('ZRANGE', lease, 0, -1)
  for _, m in ipairs(leases) do reserved = reserved + tonumber(string.match(m, ':(%d+)$')) end
end
if nbudgets > 0 then
  for i = 0, nbudgets - 1 do
    local field, limit = ARGV[8 + 2 * i], tonumber(ARGV[9 + 2 * i])
    local used = redis.call('HGET', budget, field)
    if not used then return {3, i} end
    if tonumber(used) + reserved >= limit then return {2, i} end
  end
end
if conc > 0 and #leases >= conc then return {1, 1, 'concurrency'} end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', req, '-inf', now - 60000)
  if redis.call('ZCARD', req) >= rpm then
    local oldest = redis.call('ZRANGE', req, 0, 0, 'WITHSCORES')
    return {1, math.ceil((tonumber(oldest[2]) + 60000 - now) / 1000), 'rpm'}
  end
end
if tpm > 0 then
  local second = math.floor(now / 1000)
  local buckets = redis.call('HGETALL', tok)
  local sum, oldest = 0, second
  for i = 1, #buckets, 2 do
    local s = tonumber(buckets[i])
    if s <= second - 60 then
      redis.call('HDEL', tok, buckets[i])
    else
      sum = sum + tonumber(buckets[i + 1])
      if s < oldest then oldest = s end
    end
  end
  if sum + reserved >= tpm then return {1, math.max(oldest + 60 - second, 1), 'tpm'} end
end
if rpm > 0 then
  redis.call('ZADD', req, now, member)
  redis.call('PEXPIRE', req, 61000)
end
if conc > 0 or nbudgets > 0 or tpm > 0 then
  redis.call('ZADD', lease, now + ttl, member)
  redis.call('PEXPIRE', lease, ttl + 1000)
end
return {0}
""")

_RELEASE = Script("""
local lease, tok, budget = KEYS[1], KEYS[2], KEYS[3]
redis.call('ZREM', lease, ARGV[1])
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  if ARGV[3] == '1' then
    local second = redis.call('TIME')[1]
    redis.call('HINCRBY', tok, second, tokens)
    redis.call('EXPIRE', tok, 120)
  end
  for i = 4, #ARGV do
    if redis.call('HEXISTS', budget, ARGV[i]) == 1 then
      redis.call('HINCRBY', budget, ARGV[i], tokens)
    end
  end
end
return 0
""")

_RENEW = Script("""
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[i - 1], 'XX', expiry, ARGV[i]) end
return 0
""")

# What a Redis failure looks like to the limiter: unreachable/slow, or an error reply (e.g. a
# read-only replica after a failover).
RedisError = (RedisUnavailable, ReplyError)

# Budget counters are reloaded from the store (the truth) every hour: that corrects what they
# missed, e.g. the tokens of requests released while Redis was unreachable, or events not yet
# in the store when a counter was loaded. One small indexed query per key per hour.
_BUDGET_TTL = 3600


class RedisLimiter:
    def __init__(self, client: RespClient, recorded: RecordedTokens, *, prefix: str = "tram:",
                 on_error: Literal["open", "closed"] = "open", lease_ttl: float = 30.0,
                 retry_after: float = 2.0, local: MemoryLimiter | None = None) -> None:
        self._redis = client
        self._recorded = recorded
        self._prefix = prefix
        self._on_error = on_error
        self._lease_ttl_ms = int(lease_ttl * 1000)
        self._retry_after = retry_after
        self._local = local if local is not None else MemoryLimiter(recorded)
        self._down_until = 0.0
        self._logged_at = -math.inf
        self._active: dict[str, Ticket] = {}  # lease -> ticket, renewed while in flight

    def _keys(self, key_id: str) -> tuple[str, str, str, str]:
        # A hash tag keeps a key's counters in one slot (Redis Cluster runs the script there).
        base = f"{self._prefix}{{{key_id}}}:"
        return base + "req", base + "tok", base + "lease", base + "budget"

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._logged_at >= 60:  # one line a minute during an outage, not per request
            self._logged_at = now
            logger.warning("limits: Redis unavailable (%s); %s until it answers",
                           type(exc).__name__, "limits enforced per process"
                           if self._on_error == "open" else "limited keys refused")
        self._down_until = now + self._retry_after

    async def _fallback(self, key_id: str, limits: KeyLimits, reserve: int) -> Ticket:
        if self._on_error == "closed":
            raise LimitsUnavailable("Rate limits cannot be checked right now (the limits "
                                    "store is unavailable); try again shortly.")
        return await self._local.admit(key_id, limits, reserve)

    async def admit(self, key_id: str, limits: KeyLimits, reserve: int) -> Ticket:
        if time.monotonic() < self._down_until:
            return await self._fallback(key_id, limits, reserve)
        budgets = budgets_of(limits)
        reserve = reserve if budgets or limits.tpm is not None else 0
        lease = f"{secrets.token_hex(8)}:{reserve}"
        args: list[Any] = [limits.rpm or 0, limits.tpm or 0, limits.max_concurrency or 0, lease,
                           self._lease_ttl_ms, reserve, len(budgets)]
        for budget in budgets:
            args += [budget.field, budget.limit]
        keys = self._keys(key_id)
        try:
            for _ in range(3):
                outcome = await _ADMIT(self._redis, keys, args)
                if outcome[0] != 3:
                    break
                await self._load_budget(key_id, keys[3], budgets[int(outcome[1])])
        except RedisError as exc:
            self._failed(exc)
            return await self._fallback(key_id, limits, reserve)
        if outcome[0] == 1:
            which = outcome[2].decode() if isinstance(outcome[2], bytes) else outcome[2]
            raise rate_limit_error(which, limits, int(outcome[1]))
        if outcome[0] == 2:
            raise quota_error(budgets[int(outcome[1])])
        ticket = Ticket(key_id, lease, reserve, tuple(b.field for b in budgets),
                        counts_tokens=limits.tpm is not None or bool(budgets), local=False)
        if limits.max_concurrency is not None or budgets or limits.tpm is not None:
            self._active[lease] = ticket
        return ticket

    async def _load_budget(self, key_id: str, budget_key: str, budget: Budget) -> None:
        try:
            used = await self._recorded(key_id, budget.since)
        except Exception as exc:  # the store's own errors: SQLAlchemyError, OSError
            raise StoreUnavailable("The usage store is unavailable, so this key's budget "
                                   "cannot be checked; try again shortly.") from exc
        await self._redis.call("HSETNX", budget_key, budget.field, used)
        await self._redis.call("EXPIRE", budget_key, _BUDGET_TTL)

    async def release(self, ticket: Ticket, tokens: int) -> None:
        if ticket.local:
            self._local.release_now(ticket, tokens)
            return
        self._active.pop(ticket.lease, None)
        _, tok, lease, budget = self._keys(ticket.key_id)
        try:
            await _RELEASE(self._redis, [lease, tok, budget], [
                ticket.lease, max(tokens, 0) if ticket.counts_tokens else 0,
                1 if ticket.counts_tokens else 0, *ticket.budgets])
        except RedisError as exc:
            # The lease expires on its own; the tokens are in the usage store, which the
            # counters are reloaded from.
            self._failed(exc)

    async def run(self) -> None:
        """Renew the leases of requests in flight, so that only a dead process's expire."""
        interval = self._lease_ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            if not self._active:
                continue
            tickets = list(self._active.values())
            keys = [self._keys(t.key_id)[2] for t in tickets]
            try:
                await _RENEW(self._redis, keys, [self._lease_ttl_ms, *(t.lease for t in tickets)])
            except RedisError as exc:
                self._failed(exc)

    async def aclose(self) -> None:
        await self._redis.aclose()

