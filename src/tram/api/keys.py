"""Admin API for virtual keys: /admin/keys and /admin/keys/{id} (the master key or an admin
key; only the master key may make a key an admin key)."""

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
from tram.errors import AdminRequired, InvalidRequest, NotFound
from tram.limits.base import KeyLimits
from tram.protocol.keys import KeyCreate, KeyUpdate
from tram.relay.validation import invalid_request_from
from tram.store.keys import KeyRecord, NewKey
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


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidRequest("expires_at needs a time zone, e.g. 2027-01-31T00:00:00Z.",
                             param="expires_at")
    return value.astimezone(dt.UTC) if value is not None else None


def _found(record: KeyRecord | None, key_id: str) -> KeyRecord:
    if record is None:
        raise NotFound(f"No key with id or name '{key_id}'.", param="key_id")
    return record


async def _key_id(request: Request) -> str:
    """The path's key, by id or by name (a name shared by several keys is a 400 listing
    them)."""
    ref = request.path_params["key_id"]
    return await state_of(request).keys.resolve(ref) or ref


def _may_grant_admin(request: Request, admin: bool | None) -> None:
    if admin is not None and not require_admin(request).is_master:
        raise AdminRequired("Only the master key may grant or remove admin access.",
                               param="admin")


async def create_key(request: Request) -> Response:
    require_admin(request)
    body = await _body(request, KeyCreate)
    _may_grant_admin(request, body.admin)
    if body.budget_period is not None and body.budget_tokens is None:
        raise InvalidRequest("budget_period needs budget_tokens.", param="budget_period")
    record, key = await state_of(request).keys.create(NewKey(
        name=body.name, owner=body.owner, allowed_models=body.models,
        expires_at=_utc(body.expires_at), is_admin=bool(body.admin),
        limits=KeyLimits(rpm=body.rpm, tpm=body.tpm, max_concurrency=body.max_concurrency,
                         max_total_tokens=body.max_total_tokens,
                         budget_tokens=body.budget_tokens,
                         budget_period=body.budget_period or
                         ("month" if body.budget_tokens else None))))
    # The only time the key is ever shown: it is stored as a digest.
    return _json({**record.as_json(), "key": key}, status=201)


async def list_keys(request: Request) -> Response:
    require_admin(request)
    records = await state_of(request).keys.list()
    return _json({"object": "list", "data": [r.as_json() for r in records]})


async def show_key(request: Request) -> Response:
    require_admin(request)
    key_id = await _key_id(request)
    return _json(_found(await state_of(request).keys.get(key_id), key_id).as_json())


async def update_key(request: Request) -> Response:
    require_admin(request)
    key_id = await _key_id(request)
    body = await _body(request, KeyUpdate)
    _may_grant_admin(request, body.admin)
    changes: dict[str, Any] = {}
    for field in body.model_fields_set:
        value = getattr(body, field)
        if field == "models":
            changes["allowed_models"] = value
        elif field == "expires_at":
            changes["expires_at"] = _utc(value)
        elif field == "admin":
            changes["is_admin"] = bool(value)
        else:
            changes[field] = value
    if changes.get("budget_tokens") and "budget_period" not in changes:
        existing = await state_of(request).keys.get(key_id)
        if existing is not None and existing.limits.budget_period is None:
            changes["budget_period"] = "month"
    record = await state_of(request).keys.update(key_id, changes)
    return _json(_found(record, key_id).as_json())


async def revoke_key(request: Request) -> Response:
    require_admin(request)
    key_id = await _key_id(request)
    return _json(_found(await state_of(request).keys.revoke(key_id), key_id).as_json())


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
