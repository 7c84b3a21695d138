"""Per-key limits: requests and tokens per minute, concurrency, token budgets (all-time and
per day/week/month). In-process by default; in Redis when several gateway processes or hosts
must share them (`limits.redis_url` or TRAM_REDIS_URL)."""

from __future__ import annotations

from tram.config import LimitsConfig
from tram.limits.base import KeyLimits, Limiter, RecordedTokens, Ticket
from tram.limits.memory import MemoryLimiter

__all__ = ["KeyLimits", "Limiter", "MemoryLimiter", "Ticket", "build_limiter"]


def build_limiter(config: LimitsConfig, redis_url: str | None,
                  recorded: RecordedTokens) -> Limiter:
    url = redis_url or config.redis_url
    if not url:
        return MemoryLimiter(recorded)
    # Imported only when configured: the Redis client is not needed (nor loaded) otherwise.
    from tram.limits.redis import RedisLimiter
    from tram.transport.resp import RespClient

    return RedisLimiter(RespClient(url, timeout=config.redis_timeout), recorded,
                        prefix=config.redis_prefix, on_error=config.on_redis_error)
