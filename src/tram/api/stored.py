"""A stored response, for the key that made it only: GET and DELETE it, list its input items,
and cancel it (what OpenAI allows for background responses only: this gateway answers every
response in the foreground, so a cancel is always refused, as OpenAI refuses it then)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.state import state_of
from tram.auth.principal import Principal
from tram.errors import InvalidRequest, NotFound

__all__ = ["cancel_response", "delete_response", "get_response", "response_input_items"]

_MAX_LIMIT = 100


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


def _page_params(request: Request) -> tuple[int, str, str | None]:
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit") from None
    order = request.query_params.get("order", "desc")
    if not 1 <= limit <= _MAX_LIMIT or order not in ("asc", "desc"):
        raise InvalidRequest("limit is 1 to 100 and order asc or desc.",
                             param="limit" if order in ("asc", "desc") else "order")
    return limit, order, request.query_params.get("after")


async def response_input_items(request: Request) -> Response:
    """The input items of a stored response, as OpenAI lists them (newest first unless
    `order=asc`, `limit` and an `after` cursor); items without an id get a stable one."""
    principal: Principal = request.scope["state"]["tram.principal"]
    response_id = request.path_params["response_id"]
    turn = await state_of(request).responses.get(principal.key_id, response_id)
    if turn is None:
        raise _missing(response_id)
    limit, order, after = _page_params(request)
    items = [{**item, "id": item.get("id") or f"{response_id}_in{index}"}
             if isinstance(item, dict) else item for index, item in enumerate(turn.input_items)]
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return Response(orjson.dumps({
        "object": "list", "data": page, "has_more": len(items) > limit,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None}), media_type="application/json")


async def cancel_response(request: Request) -> Response:
    principal: Principal = request.scope["state"]["tram.principal"]
    response_id = request.path_params["response_id"]
    if await state_of(request).responses.get(principal.key_id, response_id) is None:
        raise _missing(response_id)
    raise InvalidRequest("Only responses created with background=true can be cancelled; this "
                         "response was answered in the foreground and is complete.",
                         param="response_id", code="response_not_cancellable")
