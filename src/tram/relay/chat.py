"""The chat completion service: check, route, forward, relay.

`ChatService.create` returns a value: `JSONResult` (a complete answer) or `StreamResult` (SSE
frames to send as they come). It raises a `TramError` for anything the client must be told
before a response starts; once a stream has started, errors become an SSE error event followed
by `data: [DONE]` instead of a cut connection. The bridges (Responses and Anthropic Messages
over an engine's chat completions) come through here too, with a `ChatShape` of their own that
turns the chat answer and chunks into their route's shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from tram.auth.keys import Principal
from tram.config import VisionConfig
from tram.errors import ImagesNotSupported, InvalidRequest
from tram.metrics import Metrics
from tram.protocol.chat import ChatCompletionRequest
from tram.relay.forward import (
    Call,
    EngineLacksRoute,
    Forwarder,
    JSONResult,
    StreamResult,
    not_served,
    resolve_pool,
)
from tram.relay.stream import ChunkStream, StreamHandler, UsageAsked, rewrite_answer, rewritten_answer
from tram.relay.thinking import apply_thinking
from tram.relay.validation import invalid_request_from
from tram.requestlog import RequestRecord
from tram.routing.policies import RoutingHints
from tram.routing.prefix import prefix_key
from tram.routing.registry import ModelPool, Registry
from tram.routing.upstream import UpstreamClient
from tram.vision.decode import ImageWorkers
from tram.vision.fetch import ImageFetcher
from tram.vision.lift import Lifted
from tram.vision.media import check_clip, media_of
from tram.vision.parts import check_url_form, content_parts, param_of

__all__ = ["ChatService", "ChatShape", "JSONResult", "StreamResult"]

CHAT_PATH = "/chat/completions"


@dataclass(frozen=True)
class ChatShape:
    """What a bridged route makes of chat's answer: the JSON body from the chat completion,
    and a handler that turns chat chunks into the route's own stream events."""

    answer: Callable[[dict[str, Any], ModelPool], bytes]
    handler: Callable[[ModelPool], StreamHandler]


class ChatService:
    def __init__(self, registry: Registry, upstream: UpstreamClient, vision: VisionConfig,
                 fetcher: ImageFetcher, metrics: Metrics | None = None) -> None:
        self._registry = registry
        self._forwarder = Forwarder(upstream, metrics)
        self._vision = vision
        self._fetcher = fetcher
        # Image decoding and resizing: a few threads of lower priority (vision.max_concurrent).
        self._images = ImageWorkers(vision.max_concurrent)

    def close(self) -> None:
        self._images.close()

    async def create(self, principal: Principal, payload: Any, record: RequestRecord,
                     lifted: Lifted | None = None,
                     shape: ChatShape | None = None) -> JSONResult | StreamResult:
        """`lifted`: image data URLs cut out of the body before parsing (vision/lift.py);
        `shape`: a bridged route's answer and stream shapes (None: chat's own)."""
        name = payload.get("model") if isinstance(payload, dict) else None
        if isinstance(name, str) and self._registry.get(name) is not None:
            record.model = name  # known before validation, so even a 400 is counted per model
        request = _validate(payload)
        record.stream = bool(request.stream)
        pool = resolve_pool(self._registry, principal, request.model)
        if pool.config.routes and pool.config.route_mode("chat") == "off":
            raise not_served("/v1/chat/completions", pool.name,
                             "tram.yaml turns it off for this model")
        await self._prepare_images(pool, request, payload, record, lifted or {})
        self._forwarder.check_in_flight(pool)
        if pool.config.thinking is not None:
            apply_thinking(payload, pool.config.thinking == "on")
        default_max = pool.config.default_max_tokens
        if default_max and request.max_tokens is None and request.max_completion_tokens is None:
            payload["max_tokens"] = default_max
        asked = _ask_for_usage(pool, request, payload) if request.stream else UsageAsked()

        def body(served_name: str) -> bytes:
            payload["model"] = served_name
            return orjson.dumps(payload)

        alias = pool.name
        if shape is None:
            def answer(raw: bytes) -> bytes:
                return rewrite_answer(raw, alias, record)

            def handler() -> StreamHandler:
                return ChunkStream(alias, record, asked)
        else:
            bridged = shape

            def answer(raw: bytes) -> bytes:
                return bridged.answer(rewritten_answer(raw, alias, record), pool)

            def handler() -> StreamHandler:
                return bridged.handler(pool)

        call = Call(CHAT_PATH, body, bool(request.stream), answer, handler,
                    hints=_hints(pool, request))
        try:
            return await self._forwarder.run(pool, call, record)
        except EngineLacksRoute as lack:  # an embedding model, say
            raise not_served("/v1/chat/completions", pool.name,
                             f"its engine answered: {lack.error.message}") from None

    async def _vet_clip(self, pool: ModelPool, payload: dict[str, Any], message_index: int,
                        part_index: int) -> None:
        """A video or audio part of a model that enables it: fetched or decoded here, its size,
        container and duration checked, and forwarded as data (never fetched by the engine)."""
        part = media_of(payload["messages"][message_index]["content"][part_index],
                        message_index, part_index)
        assert part is not None
        limits = getattr(pool.config, part.kind)
        # Decoding, checking and re-encoding a clip (up to max_bytes) is CPU work: in the
        # image threads, as for images, never on the event loop.
        source = await self._images.run(part.source)
        data = source if isinstance(source, bytes) else \
            await self._fetcher.fetch_bytes(source, part.param, limits.max_bytes, part.kind)
        mime = await self._images.run(check_clip, data, part, limits)
        await self._images.run(part.replace, data, mime)

    async def _prepare_images(self, pool: ModelPool, request: ChatCompletionRequest,
                              payload: dict[str, Any], record: RequestRecord,
                              lifted: Lifted) -> None:
        config = pool.config
        enabled = [kind for kind in ("video", "audio") if getattr(config, kind) is not None]
        parts, clips = content_parts(request, enabled)
        record.images = len(parts)
        for message_index, part_index in clips:
            await self._vet_clip(pool, payload, message_index, part_index)
        if not parts:
            return
        if not pool.config.vision:
            message_index, part_index, _ = parts[0]
            raise ImagesNotSupported(
                f"The model '{pool.name}' is text-only and does not accept images; "
                "send image parts to a vision model such as 'qwen-vl'.",
                param=f"messages[{message_index}].content[{part_index}]",
            )
        limit = pool.config.images_per_request()
        if len(parts) > limit:
            message_index, part_index, _ = parts[limit]
            raise InvalidRequest(f"The model '{pool.name}' takes at most {limit} images per "
                                 f"request; this one has {len(parts)}.",
                                 param=f"messages[{message_index}].content[{part_index}]",
                                 code="too_many_images")
        for message_index, part_index, part in parts:
            url, param = part.image_url.url, param_of(message_index, part_index)
            view = lifted.get(url)
            if view is None:
                check_url_form(url, param)
            given = payload["messages"][message_index]["content"][part_index]
            if isinstance(given.get("image_url"), str):  # the lenient form, as OpenAI's
                given["image_url"] = {"url": given["image_url"]}
            source: str | bytes | memoryview
            if view is not None:
                source = view  # a data URL, decoded in the image threads
            elif url.startswith("data:"):
                source = url
            elif pool.config.image_fetch == "gateway":
                source, _ = await self._fetcher.fetch(url, param)
            else:
                continue  # the engine fetches it (the operator trusts its own allow-list)
            budget = pool.config.pixel_budget()
            if part.image_url.detail == "low":
                budget = min(budget, self._vision.low_detail_pixels)
            prepared = await self._images.prepare(source, self._vision, budget, param)
            record.image_pixels += prepared.sent.pixels
            if prepared.url is not None:
                given["image_url"]["url"] = prepared.url


def _ask_for_usage(pool: ModelPool, request: ChatCompletionRequest,
                   payload: dict[str, Any]) -> UsageAsked:
    """Budgets and tpm count the engine's own figures, so a stream always asks for the final
    usage chunk, and vLLM also for a running count on every chunk (what a stream cut by the
    client is charged). What the client did not ask for is kept from it: its code may read
    chunk.choices[0] of every chunk, as the guide's example does."""
    options = request.stream_options
    asked = UsageAsked(final=bool(options and options.include_usage),
                       running=bool((options.model_extra or {}).get("continuous_usage_stats"))
                       if options else False)
    wanted = {"include_usage": True}
    if pool.config.running_usage():
        wanted["continuous_usage_stats"] = True
    if not asked.final or (len(wanted) > 1 and not asked.running):
        payload["stream_options"] = {**(payload.get("stream_options") or {}), **wanted}
    return asked


def _hints(pool: ModelPool, request: ChatCompletionRequest) -> RoutingHints:
    """What the pool's policy routes by, computed only for the policies that use it: the
    prompt's prefix blocks (cache_aware, with several replicas), or the affinity key (the
    `user` field, else the start of the conversation: what a prefix cache reuses)."""
    routing = pool.config.routing
    if routing.policy in ("auto", "cache_aware"):
        if len(pool.replicas) < 2:
            return RoutingHints()
        return RoutingHints(prefix=prefix_key(request.messages, routing.block_chars,
                                              routing.max_blocks, request.user,
                                              routing.anchor_chars))
    if routing.policy != "affinity":
        return RoutingHints()
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


def _validate(payload: Any) -> ChatCompletionRequest:
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None


