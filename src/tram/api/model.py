"""The model routes as plain ASGI endpoints: one `ModelEndpoint` per route of the route table
(chat completions, completions, embeddings, responses, messages, rerank, score, tokenize,
transcriptions), each driven by its `ModelRoute`.

Chat is on every request's hot path, so these skip Starlette's request objects, router and
exception middlewares (a fifth of the gateway's CPU per request: docs/decisions.md);
errors are turned into responses in one place (`errors.error_response`), in the route's own
shape (Anthropic's on /v1/messages).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tram.api.body import ClientGone, content_length, parse_json, read_body
from tram.api.middleware import header, record_of
from tram.api.state import AppState
from tram.api.streaming import SSEResponse, cancel_on_disconnect
from tram.auth.principal import Principal
from tram.errors import TramError, error_response
from tram.meter import audio_estimate
from tram.relay.forward import StreamResult
from tram.relay.multipart import Form, boundary_of
from tram.relay.route import ModelRoute
from tram.requestlog import RequestRecord
from tram.types import Receive, Scope, Send
from tram.vision.lift import Lifted, keep_image_urls, lift_data_urls

__all__ = ["ModelEndpoint"]

_JSON = [(b"content-type", b"application/json")]


class ModelEndpoint:
    """Read, admit (the key's limits), create the answer, send it, settle what it cost."""

    def __init__(self, state: AppState, route: ModelRoute) -> None:
        self.state = state
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = record_of(scope)
        record.route = self.route.name
        try:
            await self._handle(scope, receive, send, record)
        except TramError as error:
            record.error_code = error.code
            await error_response(error, dialect=self.route.dialect)(scope, receive, send)

    def _body_limit(self) -> int:
        server = self.state.config.server
        return server.max_upload_bytes if self.route.body == "multipart" \
            else server.max_body_bytes

    def _parse(self, scope: Scope, raw: bytes) -> tuple[Any, Lifted | Form | None]:
        """The payload (what is journaled and checked), and what the service needs besides:
        the image data URLs lifted out of a chat body, or a multipart upload's form."""
        if self.route.body == "multipart":
            form = Form(raw, boundary_of(header(scope, b"content-type")))
            return dict(form.fields), form
        if self.route.body == "json-lifted":
            # Large images as data URLs are not parsed on the event loop (vision/lift.py).
            raw, lifted = lift_data_urls(raw)
            payload = parse_json(raw)
            return payload, keep_image_urls(payload, lifted)
        return parse_json(raw), None  # images stay in the body: a bridge sends them on

    async def _handle(self, scope: Scope, receive: Receive, send: Send,
                      record: RequestRecord) -> None:
        if self.route.body == "multipart":
            await self._upload(scope, receive, send, record)
            return
        principal: Principal = scope["state"]["tram.principal"]
        try:
            raw = await read_body(scope, receive, self._body_limit())
        except ClientGone:
            record.client_disconnected = True
            return
        payload, context = self._parse(scope, raw)
        # From here on the request is journaled: even a killed gateway leaves a trace of it.
        self.state.usage.begin(record, payload)
        # Admission before any engine work: rpm, tpm, concurrency and budgets of the key (a
        # key without limits has nothing to hold, and no await for it).
        admission = self.state.admission
        ticket = None if principal.limits is None else \
            await admission.admit(self.route, principal, payload)
        try:
            await self._serve(scope, receive, send, record, principal, payload, context)
        finally:
            admission.settle(record, payload)
            if ticket is not None:
                await admission.release(record, ticket)

    async def _upload(self, scope: Scope, receive: Receive, send: Send,
                      record: RequestRecord) -> None:
        """A multipart upload: admitted before a byte of its body is read (a key over its
        limits costs nothing), held within the process's upload budget while in memory, and
        parsed off the event loop."""
        state = self.state
        principal: Principal = scope["state"]["tram.principal"]
        declared = content_length(scope) or self._body_limit()
        ticket = await state.admission.admit(self.route, principal, None,
                                             audio_estimate(declared))
        payload: Any = None
        try:
            async with state.uploads.hold(declared):
                try:
                    raw = await read_body(scope, receive, self._body_limit())
                except ClientGone:
                    record.client_disconnected = True
                    return
                payload, context = await asyncio.to_thread(self._parse, scope, raw)
                del raw
                state.usage.begin(record, payload)
                await self._serve(scope, receive, send, record, principal, payload, context)
        finally:
            state.admission.settle(record, payload)
            if ticket is not None:
                await state.admission.release(record, ticket)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord,
                     principal: Principal, payload: Any, context: Any) -> None:
        state = self.state

        # A non-streaming answer can take minutes; if the client leaves meanwhile, the engine
        # request is cancelled instead of finishing for nobody.
        ticker = state.upstream.deadlines
        result = await cancel_on_disconnect(
            receive, state.models.create(self.route, principal, payload, record, context),
            record, ticker)
        if result is None:
            return
        if isinstance(result, StreamResult):
            await SSEResponse(result, record, ticker)(scope, receive, send)
            return
        # With its length given, the answer goes out as one plain body, not chunked.
        headers = [*_JSON, (b"content-length", b"%d" % len(result.body)), *result.headers]
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": result.body})
