"""The small per-request steps of the model routes' one preparation, each applied where the
route table says it applies: the model's default ceiling, its thinking default, the usage a
stream asks its engine for, and what the routing policy routes by."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tram.protocol.chat import ChatCompletionRequest
from tram.relay.route import ModelRoute
from tram.relay.stream import UsageAsked
from tram.relay.thinking import apply_thinking, requested_thinking
from tram.routing.policies import RoutingHints
from tram.routing.prefix import prefix_key
from tram.routing.registry import ModelPool

__all__ = ["ask_for_usage", "default_ceiling", "routing_hints", "thinking_default"]

NO_HINTS = RoutingHints()


def default_ceiling(route: ModelRoute, pool: ModelPool, payload: dict[str, Any]) -> None:
    """The model's default_max_tokens for a generating request that sets no limit: llama.cpp
    would otherwise run to the end of the context."""
    default = pool.config.default_max_tokens
    if default and route.ceiling and all(payload.get(name) is None for name in route.ceiling):
        payload[route.ceiling[0]] = default


def thinking_default(route: ModelRoute, pool: ModelPool, payload: dict[str, Any]) -> None:
    """The route's own thinking choice, else the model's default, as the engine reads it."""
    if route.templated and pool.config.thinking is not None:
        choice = requested_thinking(route.name, payload)
        apply_thinking(payload, pool.config.thinking == "on" if choice is None else choice)


def ask_for_usage(pool: ModelPool, payload: dict[str, Any]) -> UsageAsked:
    """Budgets and tpm count the engine's own figures, so a stream always asks for the final
    usage chunk, and vLLM also for a running count on every chunk (what a stream cut by the
    client is charged). What the client did not ask for is kept from it: its code may read
    chunk.choices[0] of every chunk, as the guide's example does."""
    options = payload.get("stream_options")
    options = options if isinstance(options, dict) else {}
    asked = UsageAsked(final=bool(options.get("include_usage")),
                       running=bool(options.get("continuous_usage_stats")))
    wanted = {"include_usage": True}
    if pool.config.running_usage():
        wanted["continuous_usage_stats"] = True
    if not asked.final or (len(wanted) > 1 and not asked.running):
        payload["stream_options"] = {**options, **wanted}
    return asked


def routing_hints(pool: ModelPool, request: BaseModel | None) -> RoutingHints:
    """What the pool's policy routes by, computed only for the policies that use it: the
    prompt's prefix blocks (cache_aware, with several replicas), or the affinity key (the
    `user` field, else the start of the conversation: what a prefix cache reuses)."""
    if not isinstance(request, ChatCompletionRequest):
        return NO_HINTS
    routing = pool.config.routing
    if routing.policy in ("auto", "cache_aware"):
        if len(pool.replicas) < 2:
            return NO_HINTS
        return RoutingHints(prefix=prefix_key(request.messages, routing.block_chars,
                                              routing.max_blocks, request.user,
                                              routing.anchor_chars))
    if routing.policy != "affinity":
        return NO_HINTS
    if request.user:
        return RoutingHints(affinity_key="user:" + request.user)
    limit = routing.affinity_prefix_chars
    pieces: list[str] = []
    size = 0
    for message in request.messages:
        texts = [message.content] if isinstance(message.content, str) else [
            getattr(part, "text", "") for part in message.content or ()]
        for text in (message.role, *texts):
            pieces.append(text)
            size += len(text)
            if size >= limit:
                return RoutingHints(affinity_key="prefix:" + "\x1f".join(pieces)[:limit])
    return RoutingHints(affinity_key="prefix:" + "\x1f".join(pieces)[:limit])
