"""Every route besides chat: check, resolve, forward (or bridge to chat), relay.

One path for all of them, driven by the `Route` table (`relay/routes.py`): the same key scope,
in-flight limit, replica choice and retries (`Forwarder`), usage capture and stream relay as
chat. Responses and Anthropic Messages are bridged to the engine's chat completions where the
model says so (`routes:` in tram.yaml) or its engine turns out to lack them.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from tram.auth.keys import Principal
from tram.config import ResponsesConfig
from tram.errors import InvalidRequest, RouteNotServed
from tram.protocol.routes import ResponsesRequest
from tram.relay.bridges import messages as messages_bridge
from tram.relay.bridges import responses as responses_bridge
from tram.relay.chat import ChatService, ChatShape
from tram.relay.events import Dialect, EventStream
from tram.relay.forward import (
    NOT_SERVED,
    Call,
    EngineLacksRoute,
    Forwarder,
    JSONResult,
    StreamResult,
    not_served,
    resolve_pool,
)
from tram.relay.multipart import Form
from tram.relay.responses import ResponsesTurn
from tram.relay.routes import Route
from tram.relay.stream import ChunkStream, StreamHandler, UsageAsked, engine_answer
from tram.relay.thinking import apply_thinking, requested_thinking
from tram.relay.validation import invalid_request_from
from tram.requestlog import RequestRecord
from tram.routing.registry import ModelPool, Registry
from tram.store.responses import ResponseStore

__all__ = ["RouteService"]

# Generating routes whose engines apply a chat template (completions take a raw prompt).
_THINKING_ROUTES = ("responses", "messages")

_HOW_TO = {
    "embeddings": " To serve embeddings, add a model whose engine does (vLLM with an "
                  "embedding model, or llama-server started with --embeddings) in tram.yaml; "
                  "see docs/operator-guide.md, \"Every route\".",
    "rerank": " Reranking needs a reranker model (vLLM, or llama-server with --reranking).",
    "transcriptions": " Transcription needs a speech model (vLLM with Whisper).",
}


class RouteService:
    def __init__(self, registry: Registry, forwarder: Forwarder, chat: ChatService,
                 store: ResponseStore, responses: ResponsesConfig) -> None:
        self._registry = registry
        self._forwarder = forwarder
        self._chat = chat
        self._store = store
        self._responses = responses

    async def create(self, route: Route, principal: Principal, payload: Any,
                     record: RequestRecord, form: Form | None = None
                     ) -> JSONResult | StreamResult:
        fields: dict[str, Any] = form.fields if form is not None else payload
        name = fields.get("model") if isinstance(fields, dict) else None
        if isinstance(name, str) and self._registry.get(name) is not None:
            record.model = name  # known before validation, so even a 400 is counted per model
        request = _validate(route, payload) if form is None else None
        name = self._model_name(route, principal, fields)
        pool = resolve_pool(self._registry, principal, name)
        record.model = pool.name
        stream = route.events != "none" and fields.get("stream") in (True, "true")
        if stream and form is not None:
            raise InvalidRequest("Streamed transcriptions are not supported by this gateway; "
                                 "leave out stream.", param="stream")
        record.stream = stream
        mode = pool.config.route_mode(route.name)
        if mode == "off":
            raise _not_served(route, pool, "tram.yaml turns it off for this model")
        turn = None
        if isinstance(request, ResponsesRequest):
            turn = ResponsesTurn(self._store, self._responses, principal.key_id, pool.name,
                                 request, payload)
            await turn.expand(payload)
        _default_ceiling(route, pool, payload)
        if mode == "bridge" or (mode == "auto" and route.name in pool.lacking):
            return await self._bridge(route, principal, pool, payload, record, turn)
        self._forwarder.check_in_flight(pool)
        if route.name in _THINKING_ROUTES and pool.config.thinking is not None:
            # The route's own choice (or the model's default) as the engine reads it.
            choice = requested_thinking(route.name, payload)
            apply_thinking(payload, pool.config.thinking == "on" if choice is None else choice)
        answered: list[dict[str, Any]] = []
        call = self._call(route, pool, payload, form, record, stream, turn, answered)
        try:
            result = await self._forwarder.run(pool, call, record)
        except EngineLacksRoute as lack:
            if mode == "auto" and route.name in ("responses", "messages"):
                pool.lacking.add(route.name)
                payload["model"] = pool.name
                return await self._bridge(route, principal, pool, payload, record, turn)
            raise _not_served(route, pool, f"its engine answered: {lack.error.message}") \
                from None
        if turn is not None and answered:
            await turn.finish(answered[0])  # stored before the client has it
        return result

    def _model_name(self, route: Route, principal: Principal, fields: Any) -> str:
        name = fields.get("model") if isinstance(fields, dict) else None
        if isinstance(name, str) and name:
            return name
        visible = [pool.name for pool in self._registry if principal.may_use(pool.name)]
        if route.model_optional and len(visible) == 1:
            return visible[0]
        raise InvalidRequest("Missing required parameter: 'model'.", param="model",
                             code="missing_required_parameter")

    def _call(self, route: Route, pool: ModelPool, payload: Any, form: Form | None,
              record: RequestRecord, stream: bool, turn: ResponsesTurn | None,
              answered: list[dict[str, Any]]) -> Call:
        alias = pool.name
        if form is not None:
            content_type = f"multipart/form-data; boundary={form.boundary}"

            def body(served_name: str) -> bytes:
                return form.with_field("model", served_name)
        else:
            content_type = "application/json"
            asked = _ask_for_usage(pool, payload) if route.events == "chunks" and stream \
                else UsageAsked()

            def body(served_name: str) -> bytes:
                payload["model"] = served_name
                return orjson.dumps(payload)

        def answer(raw: bytes) -> bytes:
            engine = engine_answer(raw, alias, record)
            if turn is not None:
                turn.rewrite(engine)
                answered.append(engine)  # stored after, without parsing it again
            return orjson.dumps(engine)

        def handler() -> StreamHandler:
            if route.events == "chunks":
                return ChunkStream(alias, record, asked)
            dialect: Dialect = "anthropic" if route.events == "anthropic" else "responses"
            return EventStream(dialect, alias, record,
                               turn.rewrite if turn is not None else None,
                               turn.finish if turn is not None else None)

        return Call(route.engine_path, body, stream, answer, handler, at_root=route.at_root,
                    content_type=content_type, lacks_on=NOT_SERVED)

    async def _bridge(self, route: Route, principal: Principal, pool: ModelPool,
                      payload: dict[str, Any], record: RequestRecord,
                      turn: ResponsesTurn | None) -> JSONResult | StreamResult:
        """The route over the engine's chat completions (the whole chat path: images,
        thinking, usage), its answer and events translated back."""
        kept: list[dict[str, Any]] = []
        if turn is not None:
            live = turn
            chat = responses_bridge.chat_request(payload)

            def answer(chat_answer: dict[str, Any], _pool: ModelPool) -> bytes:
                response = responses_bridge.response_from_chat(chat_answer, live, record)
                kept.append(response)
                return orjson.dumps(response)

            def handler(_pool: ModelPool) -> StreamHandler:
                return responses_bridge.ResponsesFromChat(live, record)
        else:
            chat = messages_bridge.chat_request(payload)

            def answer(chat_answer: dict[str, Any], _pool: ModelPool) -> bytes:
                return orjson.dumps(messages_bridge.message_from_chat(chat_answer, pool.name,
                                                                      record))

            def handler(_pool: ModelPool) -> StreamHandler:
                return messages_bridge.MessagesFromChat(pool.name, record)

        result = await self._chat.create(principal, chat, record, shape=ChatShape(answer, handler))
        if turn is not None and kept:
            await turn.finish(kept[0])
        return result


def _default_ceiling(route: Route, pool: ModelPool, payload: Any) -> None:
    """The model's default_max_tokens for a generating route whose request sets no limit (as
    chat has it): llama.cpp's completions would otherwise run to the end of the context."""
    default = pool.config.default_max_tokens
    if default and route.ceiling and isinstance(payload, dict) \
            and all(payload.get(name) is None for name in route.ceiling):
        payload[route.ceiling[0]] = default


def _not_served(route: Route, pool: ModelPool, why: str) -> RouteNotServed:
    return not_served(route.paths[0], pool.name, why, _HOW_TO.get(route.name, ""))


def _validate(route: Route, payload: Any) -> BaseModel | None:
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    assert route.schema is not None
    try:
        return route.schema.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None


def _ask_for_usage(pool: ModelPool, payload: dict[str, Any]) -> UsageAsked:
    """As for chat: a stream always asks its engine for usage (budgets count the engine's
    figures); what the client did not ask for is kept from it."""
    options = payload.get("stream_options")
    options = options if isinstance(options, dict) else {}
    asked = UsageAsked(final=bool(options.get("include_usage")),
                       running=bool(options.get("continuous_usage_stats")))
    wanted = {"include_usage": True}
    if pool.config.running_usage():
        wanted["continuous_usage_stats"] = True
    payload["stream_options"] = {**options, **wanted}
    return asked
