"""The small per-request steps of the model routes' one preparation, each applied where the
route table says it applies: the model's default ceiling, its thinking default, the usage a
stream asks its engine for, the priority an engine schedules by, and what the routing policy
routes by. `RouteSteps` says which of them a route of a model needs, worked out once per pool
(a reload rebuilds the pools), so a request runs only those."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from tram.auth.principal import Principal
from tram.errors import InvalidRequest
from tram.protocol.chat import ChatCompletionRequest
from tram.relay.route import ModelRoute
from tram.relay.stream import UsageAsked
from tram.relay.thinking import apply_thinking, requested_thinking
from tram.routing.policies import RoutingHints
from tram.routing.prefix import prefix_key
from tram.routing.registry import ModelPool
from tram.sharing.classes import priority_of

__all__ = ["NO_HINTS", "RouteSteps", "ask_for_usage", "default_ceiling", "engine_priority",
           "route_steps", "routing_hints", "thinking_default"]

NO_HINTS = RoutingHints()


@dataclass(frozen=True, slots=True)
class RouteSteps:
    """Which steps one route of one model takes (each step still checks its own details)."""

    mode: str  # the route on the model: auto, native, bridge or off (tram.yaml `routes:`)
    ceiling: bool  # the model has a default ceiling and the route a ceiling field
    thinking: bool  # the route is templated and the model has a thinking default
    priority: bool  # the route carries a priority and the model's engine schedules by it
    hints: Literal["prefix", "affinity", ""]  # what the model's routing policy routes by


def route_steps(route: ModelRoute, pool: ModelPool) -> RouteSteps:
    """The route's steps on this model, kept by the pool (`ModelPool.steps`)."""
    config = pool.config
    policy = config.routing.policy
    steps = RouteSteps(
        mode=config.route_mode(route.name),
        ceiling=bool(config.default_max_tokens and route.ceiling),
        thinking=route.templated and config.thinking is not None,
        priority=route.prioritized and config.sends_priority(),
        hints="prefix" if policy in ("auto", "cache_aware")
        else "affinity" if policy == "affinity" else "")
    pool.steps[route.name] = steps
    return steps


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


def engine_priority(route: ModelRoute, pool: ModelPool, principal: Principal, traffic: str,
                    classes: Callable[[], Mapping[str, int]], payload: dict[str, Any]) -> None:
    """The request's priority, as an engine that schedules by it reads it: its key's class or
    number (a batch line at least the batch class's). A client may volunteer a lower priority
    (a larger number) of its own, never a higher one than its key's; on a route whose engine
    body takes none (Messages), or an engine that does not schedule by it, the gateway's
    decision is that there is none to send: a client's own never passes on its own.
    `classes`: each class's number as configured now, read only where one is sent."""
    asked = payload.pop("priority", None)
    if not route.prioritized:
        return
    if asked is not None and (not isinstance(asked, int) or isinstance(asked, bool)):
        raise InvalidRequest("'priority' must be an integer.", param="priority",
                             code="invalid_type")
    if pool.config.sends_priority():
        own = priority_of(principal.priority, traffic, classes())
        payload["priority"] = own if asked is None else max(own, asked)


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


def _conversation(route: ModelRoute, payload: dict[str, Any]) -> tuple[list[Any], str | None]:
    """A Responses or Messages request's turns as (role, content) messages, and the key its
    client gives the conversation (`prompt_cache_key`, Codex's; Anthropic's metadata.user_id,
    Claude Code's session), for the prefix a cache reuses."""
    key = payload.get("prompt_cache_key")
    if route.name == "responses":
        items = payload.get("input")
        turns = [{"role": "user", "content": items}] if isinstance(items, str) else \
            [item for item in items or () if isinstance(item, dict) and "role" in item]
        system = payload.get("instructions")
    else:
        turns = [m for m in payload.get("messages") or () if isinstance(m, dict)]
        system = payload.get("system")
        metadata = payload.get("metadata")
        if key is None and isinstance(metadata, dict):
            key = metadata.get("user_id")
    if isinstance(system, str) and system:
        turns = [{"role": "system", "content": system}, *turns]
    return turns, key if isinstance(key, str) and key else None


def routing_hints(route: ModelRoute, pool: ModelPool, request: BaseModel | None,
                  payload: Any) -> RoutingHints:
    """What the pool's policy routes by, computed only for the policies that use it: the
    prompt's prefix blocks (cache_aware, with several replicas; a conversation's key —
    `prompt_cache_key`, `user` — anchors it to one replica), or the affinity key (the `user`
    field, else the start of the conversation: what a prefix cache reuses)."""
    routing = pool.config.routing
    if routing.policy in ("auto", "cache_aware"):
        if len(pool.replicas) < 2:
            return NO_HINTS
        if isinstance(request, ChatCompletionRequest):
            turns, key = request.messages, request.user or payload.get("prompt_cache_key")
        elif route.name in ("responses", "messages") and isinstance(payload, dict):
            turns, key = _conversation(route, payload)
        else:
            return NO_HINTS
        return RoutingHints(prefix=prefix_key(turns, routing.block_chars, routing.max_blocks,
                                              key, routing.anchor_chars))
    if routing.policy != "affinity" or not isinstance(request, ChatCompletionRequest):
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
