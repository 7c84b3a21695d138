"""POST /v1/chat/completions, as a plain ASGI endpoint.

It is the one route on every request's hot path, so it skips Starlette's request objects,
router and exception middlewares (the benchmark measured them at ~20% of the gateway's CPU per
request); errors are still turned into responses in one place (`errors.error_response`).
"""

from __future__ import annotations

import logging

from tram.api.body import ClientGone, read_json
from tram.api.middleware import record_of
from tram.api.state import AppState
from tram.api.streaming import SSEResponse, cancel_on_disconnect
from tram.auth.keys import Principal
from tram.errors import InternalError, TramError, error_response
from tram.relay.chat import StreamResult
from tram.types import Receive, Scope, Send

__all__ = ["ChatEndpoint"]

logger = logging.getLogger("tram.app")

_JSON = [(b"content-type", b"application/json")]


class ChatEndpoint:
    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = record_of(scope)
        try:
            await self._handle(scope, receive, send)
        except TramError as error:
            record.error_code = error.code
            await error_response(error)(scope, receive, send)
        except Exception:
            logger.exception("chat request %s failed", record.request_id)
            record.error_code = "internal_error"
            if record.status is None:  # nothing sent yet: the client still gets an answer
                await error_response(InternalError(
                    "The gateway failed unexpectedly; see its log with this request's "
                    "X-Request-ID."))(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        record = record_of(scope)
        principal: Principal = scope["state"]["tram.principal"]
        try:
            payload = await read_json(scope, receive, state.config.server.max_body_bytes)
        except ClientGone:
            record.client_disconnected = True
            return
        if principal.limits is None:
            await self._serve(scope, receive, send, principal, payload)
            return
        # Admission before any engine work: rpm, tpm, concurrency and budget of the key.
        await state.limiter.check(principal.key_id, principal.limits)
        with state.limiter.in_flight(principal.key_id):
            await self._serve(scope, receive, send, principal, payload)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, principal: Principal,
                     payload: object) -> None:
        state = self.state
        record = record_of(scope)

        # A non-streaming answer can take minutes; if the client leaves meanwhile, the engine
        # request is cancelled instead of finishing for nobody.
        result = await cancel_on_disconnect(
            receive, state.chat.create(principal, payload, record), record)
        if result is None:
            return
        if isinstance(result, StreamResult):
            await SSEResponse(result, record)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": result.status, "headers": _JSON})
        await send({"type": "http.response.body", "body": result.body})


