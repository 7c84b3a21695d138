"""Every model route, one path: check, resolve, prepare, forward (or bridge to chat), relay.

`ModelService.create` returns a value: `JSONResult` (a complete answer) or `StreamResult` (SSE
frames to send as they come). It raises a `TramError` for anything the client must be told
before a response starts; once a stream has started, errors become the route's own error event
instead of a cut connection.

The preparation is shared by every route (`ModelRoute` says which parts apply): the body
checked against the route's schema, the key's scope, the route on or off for the model, media
vetted (`relay/media.py`), the stored conversation of a Responses turn, the model's default
ceiling and thinking, the in-flight limit. Responses and Anthropic Messages are bridged to the
engine's chat completions where the model says so (`routes:` in tram.yaml) or its engine turns
out to lack them; the bridged request then takes chat's own path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from tram.auth.principal import Principal
from tram.config import ModelConfig, ResponsesConfig
from tram.errors import ConfigError, InvalidRequest, RouteNotServed
from tram.protocol.routes import ResponsesRequest
from tram.protocol.validation import invalid_request_from
from tram.relay.bridges import messages as messages_bridge
from tram.relay.bridges import responses as responses_bridge
from tram.relay.bridges.tools import tool_map
from tram.relay.conversation import ResponsesTurn
from tram.relay.events import EventStream
from tram.relay.forward import (
    Call,
    EngineLacksRoute,
    Forwarder,
    JSONResult,
    StreamResult,
    not_served,
    resolve_pool,
)
from tram.relay.media import MediaVetting
from tram.relay.multipart import Form
from tram.relay.queueing import Queues
from tram.relay.route import ModelRoute
from tram.relay.sealing import Sealer, wants_sealing
from tram.relay.steps import (
    NO_HINTS,
    RouteSteps,
    ask_for_usage,
    default_ceiling,
    engine_priority,
    route_steps,
    routing_hints,
    thinking_default,
)
from tram.relay.stream import (
    ChunkStream,
    StreamHandler,
    UsageAsked,
    choices_answer,
    engine_answer,
)
from tram.requestlog import RequestRecord
from tram.routing.registry import ModelPool, Registry
from tram.sharing.fairqueue import TicketState
from tram.store.stored_responses import ResponseStore
from tram.vision.lift import Lifted

__all__ = ["ChatShape", "ModelService"]

logger = logging.getLogger("tram.relay")

_HOW_TO = {
    "embeddings": " To serve embeddings, add a model whose engine does (vLLM with an "
                  "embedding model, or llama-server started with --embeddings) in tram.yaml; "
                  "see docs/operator-guide.md, \"Every route\".",
    "rerank": " Reranking needs a reranker model (vLLM, or llama-server with --reranking).",
    "transcriptions": " Transcription needs a speech model (vLLM with Whisper).",
}


_AS_USUAL = UsageAsked()


@dataclass(frozen=True)
class ChatShape:
    """What a bridged route makes of chat's answer: the JSON body from the chat completion,
    and a handler that turns chat chunks into the route's own stream events."""

    answer: Callable[[dict[str, Any], ModelPool], bytes]
    handler: Callable[[ModelPool], StreamHandler]


@dataclass
class _Request:
    """One request on its way through the service."""

    route: ModelRoute
    principal: Principal
    payload: Any
    record: RequestRecord
    pool: ModelPool
    checked: BaseModel | None
    stream: bool
    form: Form | None = None
    turn: ResponsesTurn | None = None
    expanded: bool = False

    async def expand(self) -> None:
        """A Responses turn's stored conversation put in front of its input, once."""
        if self.turn is not None and not self.expanded:
            self.expanded = True
            await self.turn.expand(self.payload)


class ModelService:
    def __init__(self, registry: Registry, forwarder: Forwarder, media: MediaVetting,
                 store: ResponseStore, responses: ResponsesConfig,
                 routes: Mapping[str, ModelRoute], sealer: Sealer,
                 queues: Queues | None = None,
                 priorities: Mapping[str, int] | None = None) -> None:
        self._registry = registry
        self.queues = queues
        # Each class's priority number (tram.yaml's sharing.priorities).
        self._priorities = dict(priorities or {"interactive": 0, "batch": 10})
        self._sealer = sealer
        self._forwarder = forwarder
        self._media = media
        self._store = store
        self._responses = responses
        self._routes = dict(routes)
        self._chat = routes["chat"]

    def _classes(self) -> Mapping[str, int]:
        """Each class's priority number as configured now (a reload changes them)."""
        return self.queues.sharing.priorities if self.queues is not None else self._priorities

    def check_config(self, models: Iterable[ModelConfig]) -> None:
        """Each model's `routes:` name routes of the table, and bridges only those that have
        one; a ConfigError naming the model and the route otherwise."""
        for model in models:
            for name, mode in model.routes.items():
                route = self._routes.get(name)
                if route is None:
                    raise ConfigError(f"models[{model.name}].routes: no route named {name!r} "
                                      f"(routes: {', '.join(sorted(self._routes))})")
                if mode == "bridge" and route.bridge is None:
                    raise ConfigError(f"models[{model.name}].routes.{name}: route {name!r} has "
                                      "no bridge to chat; use auto, native or off")

    async def create(self, route: ModelRoute, principal: Principal, payload: Any,
                     record: RequestRecord, context: Lifted | Form | None = None,
                     shape: ChatShape | None = None) -> JSONResult | StreamResult:
        """`context`: image data URLs lifted out of a chat body before parsing
        (vision/lift.py), or a multipart upload's form; `shape`: a bridged route's answer and
        stream shapes (chat only)."""
        form = context if isinstance(context, Form) else None
        request = self._resolve(route, principal, payload, record, form)
        pool = request.pool
        steps = pool.steps.get(route.name) or route_steps(route, pool)
        if steps.mode == "off":
            raise _not_served(route, pool, "tram.yaml turns it off for this model")
        if isinstance(request.checked, ResponsesRequest):
            # Reasoning items the client kept sealed, opened for the engine (relay/sealing.py).
            self._sealer.open_items(payload.get("input"), principal.key_id)
            request.turn = ResponsesTurn(self._store, self._responses, principal.key_id,
                                         pool.name, request.checked, payload)
        if route.bridge and (steps.mode == "bridge"
                             or (steps.mode == "auto" and route.name in pool.lacking)):
            return await self._bridge(request)
        lifted = context if isinstance(context, dict) else {}
        if self._media.applies(route, request.checked):
            await self._media.vet(route, pool, request.checked, payload, record, lifted)
        if request.turn is not None:
            await request.expand()  # after vetting: a stored turn's media was vetted then
        if form is None:
            self._prepare(request, steps)
        if self.queues is None or not self.queues.sharing.queue.enabled:
            self._forwarder.check_in_flight(pool)
        return await self._forward(request, steps, shape)

    def _prepare(self, request: _Request, steps: RouteSteps) -> None:
        """The steps the route takes on this model: only those (`RouteSteps`)."""
        route, pool, payload = request.route, request.pool, request.payload
        if steps.ceiling:
            default_ceiling(route, pool, payload)
        if steps.thinking:
            thinking_default(route, pool, payload)
        if route.prioritized and (steps.priority or "priority" in payload):
            engine_priority(route, pool, request.principal, request.record.traffic,
                            self._classes, payload)
        else:
            payload.pop("priority", None)  # a client's own never passes on its own

    def _resolve(self, route: ModelRoute, principal: Principal, payload: Any,
                 record: RequestRecord, form: Form | None) -> _Request:
        """The body checked, the model found within the key's scope."""
        fields: Any = form.fields if form is not None else payload
        name = fields.get("model") if isinstance(fields, dict) else None
        if isinstance(name, str) and self._registry.get(name) is not None:
            record.model = name  # known before validation, so even a 400 is counted per model
        checked = _validate(route, payload) if form is None else None
        if not (isinstance(name, str) and name):
            name = self._default_model(route, principal)
        pool = resolve_pool(self._registry, principal, name)
        record.model = pool.name
        stream = route.events != "none" and fields.get("stream") in (True, "true")
        if stream and form is not None:
            raise InvalidRequest("Streamed transcriptions are not supported by this gateway; "
                                 "leave out stream.", param="stream")
        record.stream = stream
        return _Request(route, principal, payload, record, pool, checked, stream, form)

    def _default_model(self, route: ModelRoute, principal: Principal) -> str:
        """A request that names no model: the key's only one, where the route allows it."""
        visible = [pool.name for pool in self._registry if principal.may_use(pool.name)]
        if route.model_optional and len(visible) == 1:
            return visible[0]
        raise InvalidRequest("Missing required parameter: 'model'.", param="model",
                             code="missing_required_parameter")

    async def _forward(self, request: _Request, steps: RouteSteps,
                       shape: ChatShape | None) -> JSONResult | StreamResult:
        """Forwarded once the model's fair queue lets it start; its slot given back when the
        engine hold is (a stream's when it ends), exactly once, whatever happens."""
        answered: list[dict[str, Any]] = []
        call = self._call(request, steps, shape, answered)
        route, pool = request.route, request.pool
        entered = None if self.queues is None else self.queues.offer(
            pool, route, request.principal, request.payload, request.record)
        try:
            if entered is not None and entered[1].state is not TicketState.STARTED:
                await entered[0].wait(entered[1])
            result = await self._forwarder.run(pool, call, request.record)
        except BaseException as failure:
            if entered is not None:
                entered[0].leave(entered[1])
            if not isinstance(failure, EngineLacksRoute):
                raise
            if steps.mode == "auto" and route.bridge is not None:
                pool.lacking.add(route.name)
                request.payload["model"] = pool.name
                return await self._bridge(request)
            raise _not_served(route, pool, f"its engine answered: {failure.error.message}") \
                from None
        if entered is not None:
            gate, ticket = entered
            if isinstance(result, StreamResult):
                result.on_close = lambda: gate.leave(ticket)
            else:
                gate.leave(ticket)
        if request.turn is not None and answered:
            await request.turn.finish(answered[0])  # stored before the client has it
        return result

    def _call(self, request: _Request, steps: RouteSteps, shape: ChatShape | None,
              answered: list[dict[str, Any]]) -> Call:
        route, pool, record, payload = request.route, request.pool, request.record, request.payload
        alias, turn, form = pool.name, request.turn, request.form
        items = self._item_hook(request) if turn is not None else None
        asked = ask_for_usage(pool, payload) if route.events == "chunks" and request.stream \
            else _AS_USUAL

        def body(served_name: str) -> bytes:
            if form is not None:
                return form.with_field("model", served_name)
            payload["model"] = served_name
            return orjson.dumps(payload)

        def answer(raw: bytes) -> bytes:
            if shape is not None:
                return shape.answer(choices_answer(raw, alias, record), pool)
            if route.events == "chunks":
                return orjson.dumps(choices_answer(raw, alias, record))
            engine = engine_answer(raw, alias, record)
            record.meter.charge_answer(route.name, engine, payload, form.size if form else 0)
            if items is not None:
                for item in engine.get("output") or ():
                    items(item)
            if turn is not None:
                turn.rewrite(engine)
                answered.append(engine)  # stored after, without parsing it again
            return orjson.dumps(engine)

        def handler() -> StreamHandler:
            if shape is not None:
                return shape.handler(pool)
            if route.events == "chunks":
                return ChunkStream(alias, record, asked)
            return EventStream("anthropic" if route.events == "anthropic" else "responses",
                               alias, record, turn.rewrite if turn is not None else None,
                               turn.finish if turn is not None else None, items)

        content_type = "application/json" if form is None else \
            f"multipart/form-data; boundary={form.boundary}"
        return Call(route.engine_path, body, request.stream, answer, handler,
                    at_root=route.at_root, content_type=content_type, lacks_on=route.lacks_on,
                    hints=NO_HINTS if not steps.hints or (steps.hints == "prefix"
                                                          and len(pool.replicas) < 2)
                    else routing_hints(route, pool, request.checked, payload))

    def _item_hook(self, request: _Request) -> Callable[[Any], None] | None:
        """What each output item of a native Responses answer gets: the namespace of a
        namespaced function's call (vLLM answers them bare), reasoning sealed for a client
        that asked for encrypted_content."""
        tools = tool_map(request.payload.get("tools"))
        owner = request.principal.key_id
        seal = wants_sealing(request.payload)
        if not tools.needed() and not seal:
            return None

        def each(item: Any) -> None:
            tools.annotate(item)
            if seal:
                self._sealer.seal_item(item, owner)
        return each

    def _sealed_items(self, request: _Request) -> Callable[[dict[str, Any]], None] | None:
        if not wants_sealing(request.payload):
            return None
        owner = request.principal.key_id

        def seal(item: dict[str, Any]) -> None:
            self._sealer.seal_item(item, owner)
        return seal

    async def _bridge(self, request: _Request) -> JSONResult | StreamResult:
        """The route over the engine's chat completions (the whole chat path: images,
        thinking, usage), its answer and events translated back."""
        kept: list[dict[str, Any]] = []
        record, pool, turn = request.record, request.pool, request.turn
        await request.expand()
        ignored: list[str] = []
        if turn is not None:
            live = turn
            tools = tool_map(request.payload.get("tools"), pool.config.builtin_tools)
            ignored = tools.ignored
            chat = responses_bridge.chat_request(request.payload, tools)
            sealed = self._sealed_items(request)

            def answer(chat_answer: dict[str, Any], _pool: ModelPool) -> bytes:
                response = responses_bridge.response_from_chat(chat_answer, live, record, tools)
                if sealed is not None:
                    for item in response["output"]:
                        sealed(item)
                kept.append(response)
                return orjson.dumps(response)

            def handler(_pool: ModelPool) -> StreamHandler:
                return responses_bridge.ResponsesFromChat(live, record, tools, sealed)
        else:
            chat = messages_bridge.chat_request(request.payload)

            def answer(chat_answer: dict[str, Any], _pool: ModelPool) -> bytes:
                return orjson.dumps(messages_bridge.message_from_chat(chat_answer, pool.name,
                                                                      record))

            def handler(_pool: ModelPool) -> StreamHandler:
                return messages_bridge.MessagesFromChat(pool.name, record)

        result = await self.create(self._chat, request.principal, chat, record,
                                   shape=ChatShape(answer, handler))
        if turn is not None and kept:
            await turn.finish(kept[0])
        if ignored:  # the client is told what its request lost, and so is the operator
            logger.info("request %s: tools the engine cannot run left out: %s",
                        record.request_id, ", ".join(ignored))
            result.headers.append((b"x-tram-ignored-tools", ",".join(ignored).encode()))
        return result


def _not_served(route: ModelRoute, pool: ModelPool, why: str) -> RouteNotServed:
    return not_served(route.path, pool.name, why, _HOW_TO.get(route.name, ""))


def _validate(route: ModelRoute, payload: Any) -> BaseModel:
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    assert route.schema is not None
    try:
        return route.schema.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None
