"""Per-key limits: requests and tokens per minute, concurrency, total token budget."""

from tram.limits.memory import KeyLimits, Limiter

__all__ = ["KeyLimits", "Limiter"]
