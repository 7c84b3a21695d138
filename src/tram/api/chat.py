"""POST /v1/chat/completions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tram.api.body import ClientGone, read_json
from tram.api.middleware import record_of
from tram.api.state import state_of
from tram.api.streaming import SSEResponse, cancel_on_disconnect
from tram.auth.keys import Principal
from tram.relay.chat import JSONResult, StreamResult

__all__ = ["chat_completions"]


async def chat_completions(request: Request) -> Response | SSEResponse:
    state = state_of(request)
    record = record_of(request.scope)
    principal: Principal = request.scope["state"]["tram.principal"]
    try:
        payload = await read_json(request, state.config.server.max_body_bytes)
    except ClientGone:
        record.client_disconnected = True
        return Response(status_code=499)

    async def work() -> JSONResult | StreamResult:
        return await state.chat.create(principal, payload, record)

    # A non-streaming answer can take minutes; if the client leaves meanwhile, the engine
    # request is cancelled instead of finishing for nobody.
    result = await cancel_on_disconnect(request.receive, work, record)
    if result is None:
        return Response(status_code=499)
    if isinstance(result, StreamResult):
        return SSEResponse(result, record, [])
    return Response(result.body, status_code=result.status, media_type="application/json")
