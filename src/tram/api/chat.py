"""The model routes as plain ASGI endpoints: POST /v1/chat/completions and every relayed route
(completions, embeddings, responses, messages, rerank, score, tokenize, transcriptions).

Chat is on every request's hot path, so these skip Starlette's request objects, router and
exception middlewares (the benchmark measured them at ~20% of the gateway's CPU per request);
errors are still turned into responses in one place (`errors.error_response`), in the route's
own shape (Anthropic's on /v1/messages).
"""

from __future__ import annotations

import logging
from typing import Any

from tram.api.body import ClientGone, parse_json, read_body
from tram.api.middleware import header, record_of
from tram.api.state import AppState
from tram.api.streaming import SSEResponse, cancel_on_disconnect
from tram.auth.keys import Principal
from tram.errors import InternalError, TramError, error_response
from tram.relay.accounting import settle
from tram.relay.forward import JSONResult, StreamResult
from tram.relay.multipart import Form, boundary_of
from tram.relay.routes import Route
from tram.requestlog import RequestRecord
from tram.types import Receive, Scope, Send
from tram.vision.lift import Lifted, keep_image_urls, lift_data_urls

__all__ = ["ChatEndpoint", "RouteEndpoint"]

logger = logging.getLogger("tram.app")

_JSON = [(b"content-type", b"application/json")]
# Held against a budget for a request that sets no max_tokens on a model with no default.
_UNBOUNDED_CEILING = 256


class _ModelEndpoint:
    """Read, admit (the key's limits), create the answer, send it, settle what it cost."""

    route = "chat"
    dialect = "openai"
    ceiling_fields: tuple[str, ...] = ("max_completion_tokens", "max_tokens")

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = record_of(scope)
        record.route = self.route
        try:
            await self._handle(scope, receive, send)
        except TramError as error:
            record.error_code = error.code
            await error_response(error, dialect=self.dialect)(scope, receive, send)
        except Exception:
            logger.exception("%s request %s failed", self.route, record.request_id)
            record.error_code = "internal_error"
            if record.status is None:  # nothing sent yet: the client still gets an answer
                await error_response(InternalError(
                    "The gateway failed unexpectedly; see its log with this request's "
                    "X-Request-ID."), dialect=self.dialect)(scope, receive, send)

    def _body_limit(self) -> int:
        return self.state.config.server.max_body_bytes

    def _parse(self, scope: Scope, raw: bytes) -> tuple[Any, Any]:
        """The payload (what is journaled and checked), and what `_create` needs besides."""
        # Large images as data URLs are not parsed on the event loop (vision/lift.py).
        raw, lifted = lift_data_urls(raw)
        payload = parse_json(raw)
        return payload, keep_image_urls(payload, lifted)

    async def _create(self, principal: Principal, payload: Any, record: RequestRecord,
                      context: Any) -> JSONResult | StreamResult:
        lifted: Lifted = context
        return await self.state.chat.create(principal, payload, record, lifted)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        record = record_of(scope)
        principal: Principal = scope["state"]["tram.principal"]
        try:
            raw = await read_body(scope, receive, self._body_limit())
        except ClientGone:
            record.client_disconnected = True
            return
        payload, context = self._parse(scope, raw)
        # From here on the request is journaled: even a killed gateway leaves a trace of it.
        state.usage.begin(record, payload)
        ticket = None
        if principal.limits is not None:
            # Admission before any engine work: rpm, tpm, concurrency and budgets of the key.
            ticket = await state.limiter.admit(principal.key_id, principal.limits,
                                               self._completion_ceiling(payload))
        try:
            await self._serve(scope, receive, send, principal, payload, context)
        finally:
            # A cut stream or a cancelled request is charged what the engine did for it.
            settle(record, payload)
            if ticket is not None:
                await state.limiter.release(ticket, (record.prompt_tokens or 0)
                                            + (record.completion_tokens or 0))

    def _completion_ceiling(self, payload: object) -> int:
        """What a request may still spend, held against budgets while it runs."""
        if not self.ceiling_fields:
            return 0  # nothing generated: embeddings, rerank, tokenize, …
        if isinstance(payload, dict):
            for name in self.ceiling_fields:
                value = payload.get(name)
                if isinstance(value, int) and value > 0:
                    return value
            model = payload.get("model")
            config = self.state.config.model(model) if isinstance(model, str) else None
            if config is not None and config.default_max_tokens is not None:
                return config.default_max_tokens
        return _UNBOUNDED_CEILING

    async def _serve(self, scope: Scope, receive: Receive, send: Send, principal: Principal,
                     payload: Any, context: Any) -> None:
        state = self.state
        record = record_of(scope)

        # A non-streaming answer can take minutes; if the client leaves meanwhile, the engine
        # request is cancelled instead of finishing for nobody.
        ticker = state.upstream.deadlines
        result = await cancel_on_disconnect(
            receive, self._create(principal, payload, record, context), record, ticker)
        if result is None:
            return
        if isinstance(result, StreamResult):
            await SSEResponse(result, record, ticker)(scope, receive, send)
            return
        # With its length given, the answer goes out as one plain body, not chunked.
        headers = [*_JSON, (b"content-length", b"%d" % len(result.body))]
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": result.body})


class ChatEndpoint(_ModelEndpoint):
    """POST /v1/chat/completions."""


class RouteEndpoint(_ModelEndpoint):
    """One relayed route of `relay/routes.py`."""

    def __init__(self, state: AppState, route: Route) -> None:
        super().__init__(state)
        self._route = route
        self.route = route.name
        self.dialect = route.dialect
        self.ceiling_fields = route.ceiling

    def _body_limit(self) -> int:
        server = self.state.config.server
        return server.max_body_bytes if self._route.schema is not None \
            else server.max_upload_bytes

    def _parse(self, scope: Scope, raw: bytes) -> tuple[Any, Any]:
        if self._route.schema is not None:
            return parse_json(raw), None  # images stay in the body: a bridge sends them on
        form = Form(raw, boundary_of(header(scope, b"content-type")))
        return dict(form.fields), form

    async def _create(self, principal: Principal, payload: Any, record: RequestRecord,
                      context: Any) -> JSONResult | StreamResult:
        form = context if isinstance(context, Form) else None
        return await self.state.routes.create(self._route, principal, payload, record, form)
