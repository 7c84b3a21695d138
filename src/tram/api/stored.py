"""GET and DELETE /v1/responses/{id}: a stored response, for the key that made it only."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.state import state_of
from tram.auth.principal import Principal
from tram.errors import NotFound

__all__ = ["delete_response", "get_response"]


def _missing(response_id: str) -> NotFound:
    # The same answer for an id of another key as for one that never existed.
    return NotFound(f"No response with id '{response_id}' found.", param="response_id")


async def get_response(request: Request) -> Response:
    principal: Principal = request.scope["state"]["tram.principal"]
    response_id = request.path_params["response_id"]
    turn = await state_of(request).responses.get(principal.key_id, response_id)
    if turn is None:
        raise _missing(response_id)
    return Response(orjson.dumps(turn.response), media_type="application/json")


async def delete_response(request: Request) -> Response:
    principal: Principal = request.scope["state"]["tram.principal"]
    response_id = request.path_params["response_id"]
    if not await state_of(request).responses.delete(principal.key_id, response_id):
        raise _missing(response_id)
    return Response(orjson.dumps({"id": response_id, "object": "response.deleted",
                                  "deleted": True}), media_type="application/json")
