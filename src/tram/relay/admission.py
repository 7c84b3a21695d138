"""Admission against a key's limits, for every model request (the HTTP routes and the batch
runner's lines alike): rpm, tpm, concurrency and budgets checked before any engine work, and
what the request cost released afterwards.

What a request holds while it runs is an estimate of its prompt plus what it may still
generate (its own ceiling field, else the model's `default_max_tokens`, else 256), for keys
with a budget or a tpm limit (docs/decisions.md, "What a request holds against its limits").
"""

from __future__ import annotations

from typing import Any

from tram.auth.principal import Principal
from tram.limits.base import Limiter, Ticket
from tram.meter import prompt_estimate
from tram.relay.route import ModelRoute
from tram.requestlog import RequestRecord
from tram.routing.registry import Registry

__all__ = ["UNBOUNDED_CEILING", "Admission"]

# Held against a budget for a request that sets no max_tokens on a model with no default.
UNBOUNDED_CEILING = 256


class Admission:
    def __init__(self, limiter: Limiter, registry: Registry) -> None:
        self.limiter = limiter
        self._registry = registry

    async def admit(self, route: ModelRoute, principal: Principal, payload: Any,
                    estimate: int | None = None) -> Ticket | None:
        """Raise RateLimited / InsufficientQuota (429) if the request may not start; the
        ticket to `release` with otherwise (None for a key without limits). `estimate`: what to
        hold instead of the prompt and ceiling (an upload, from its size)."""
        limits = principal.limits
        if limits is None:
            return None
        reserve = 0
        if limits.tpm is not None or limits.budget_tokens is not None \
                or limits.max_total_tokens is not None:
            reserve = estimate if estimate is not None else \
                prompt_estimate(payload) + self.completion_ceiling(route, payload)
        return await self.limiter.admit(principal.key_id, limits, reserve)

    @staticmethod
    def settle(record: RequestRecord, payload: Any) -> None:
        """What the request cost, final: a cut stream or a cancelled request is charged what
        the engine did for it."""
        record.meter.settle(payload)

    async def release(self, record: RequestRecord, ticket: Ticket) -> None:
        """What `admit` held, traded for what the request cost (after `settle`)."""
        await self.limiter.release(ticket, record.meter.total())

    def completion_ceiling(self, route: ModelRoute, payload: object) -> int:
        """What a request may still generate, held against budgets while it runs."""
        if not route.ceiling:
            return 0  # nothing generated: embeddings, rerank, tokenize, …
        if isinstance(payload, dict):
            for name in route.ceiling:
                value = payload.get(name)
                if isinstance(value, int) and value > 0:
                    return value
            model = payload.get("model")
            pool = self._registry.get(model) if isinstance(model, str) else None
            if pool is not None and pool.config.default_max_tokens is not None:
                return pool.config.default_max_tokens
        return UNBOUNDED_CEILING
