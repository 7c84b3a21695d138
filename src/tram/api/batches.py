"""/v1/batches (a key's own batches) and /admin/batches (every key's, for administrators): an
adapter from HTTP to the Batch API's service (batches/service.py)."""

from __future__ import annotations

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from tram.api.admin import require_admin
from tram.api.body import ClientGone, read_json
from tram.api.state import state_of
from tram.auth.principal import Principal
from tram.errors import InvalidRequest
from tram.protocol.batches import BatchCreate
from tram.protocol.validation import invalid_request_from

__all__ = ["admin_batches", "cancel_batch", "create_batch", "get_batch", "list_batches"]

_MAX_BODY = 64 * 1024  # ids, an endpoint and 16 short metadata pairs


def _json(data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope["state"]["tram.principal"]
    return principal


async def create_batch(request: Request) -> Response:
    try:
        payload = await read_json(request.scope, request.receive, _MAX_BODY)
    except ClientGone:
        return Response(status_code=499)
    try:
        body = BatchCreate.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None
    return _json(await state_of(request).batches.create(_principal(request), body))


async def get_batch(request: Request) -> Response:
    return _json(await state_of(request).batches.get(_principal(request),
                                                     request.path_params["batch_id"]))


def _page(request: Request) -> tuple[str | None, int]:
    given = request.query_params.get("limit", "20")
    if not (given.isascii() and given.isdigit()):
        raise InvalidRequest("Invalid value for 'limit': an integer from 1 to 100.",
                             param="limit")
    return request.query_params.get("after"), int(given)


async def list_batches(request: Request) -> Response:
    after, limit = _page(request)
    return _json(await state_of(request).batches.list(_principal(request), after, limit))


async def cancel_batch(request: Request) -> Response:
    return _json(await state_of(request).batches.cancel(_principal(request),
                                                        request.path_params["batch_id"]))


async def admin_batches(request: Request) -> Response:
    require_admin(request)
    after, limit = _page(request)
    return _json(await state_of(request).batches.list(None, after, limit))
