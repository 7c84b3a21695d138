"""Admin API for virtual keys: /admin/keys and /admin/keys/{id}, where the id may also be a
key's name. An adapter: the body is parsed into `protocol/keys.py`'s models and the key
administration service (`keys/service.py`) decides, with the rules of who may do what."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from tram.api.admin import require_admin
from tram.api.body import ClientGone, read_json
from tram.api.state import state_of
from tram.errors import InvalidRequest
from tram.keys.service import KeyAdmin
from tram.protocol.keys import KeyCreate, KeyUpdate
from tram.protocol.validation import invalid_request_from
from tram.store.usage import usage_summary

__all__ = ["create_key", "list_keys", "revoke_key", "show_key", "update_key", "usage_view"]

_MAX_ADMIN_BODY = 64 * 1024


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


M = TypeVar("M", bound=BaseModel)


async def _body(request: Request, schema: type[M]) -> M:
    try:
        payload = await read_json(request.scope, request.receive, _MAX_ADMIN_BODY)
    except ClientGone:
        raise InvalidRequest("The request body was not received.") from None
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None


def _admin(request: Request) -> KeyAdmin:
    return KeyAdmin(state_of(request).keys)


async def create_key(request: Request) -> Response:
    actor = require_admin(request)
    record, key = await _admin(request).create(actor, await _body(request, KeyCreate))
    # The only time the key is ever shown: it is stored as a digest.
    return _json({**record.as_json(), "key": key}, status=201)


async def list_keys(request: Request) -> Response:
    records = await _admin(request).list(require_admin(request))
    return _json({"object": "list", "data": [r.as_json() for r in records]})


async def show_key(request: Request) -> Response:
    record = await _admin(request).show(require_admin(request), request.path_params["key_id"])
    return _json(record.as_json())


async def update_key(request: Request) -> Response:
    actor = require_admin(request)
    body = await _body(request, KeyUpdate)
    record = await _admin(request).update(actor, request.path_params["key_id"], body)
    return _json(record.as_json())


async def revoke_key(request: Request) -> Response:
    record = await _admin(request).revoke(require_admin(request), request.path_params["key_id"])
    return _json(record.as_json())


async def usage_view(request: Request) -> Response:
    """GET /admin/usage?by=key|model|day|route&days=N[&key=ID or NAME][&model=NAME]: requests,
    tokens, errors and error rate per group, busiest first (by=key: the top keys, each with
    its name and owner)."""
    require_admin(request)
    by = request.query_params.get("by", "key")
    if by not in ("key", "model", "day", "route"):
        raise InvalidRequest("'by' must be key, model, day or route.", param="by")
    days = request.query_params.get("days")
    since = None
    if days is not None:
        try:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=float(days))
        except (ValueError, OverflowError):
            raise InvalidRequest("'days' must be a number of days, e.g. 7 or 0.5.",
                                 param="days") from None
    state = state_of(request)
    key = request.query_params.get("key")
    if key is not None and key != "master":
        key = await state.keys.resolve(key) or key  # an id, or a key's name
    await state.usage.flush()  # what was just served is in the view
    rows = await usage_summary(state.database, by, since, key,
                               request.query_params.get("model"))
    return _json({"object": "list", "by": by, "data": rows})
