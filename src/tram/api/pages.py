"""What the web pages read beyond the OpenAI API: who is signed in (`GET /v1/me`, any key: its
own record and usage), and the models' replicas live (`GET /admin/models`, admins)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.admin import require_admin
from tram.api.state import state_of
from tram.auth.principal import Principal
from tram.store.keys import LIMIT_FIELDS
from tram.store.usage import usage_summary

__all__ = ["me", "models_status"]


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


async def me(request: Request) -> Response:
    """The signed-in key: what it may do (which pages to show), and its usage of the last 30
    days by day. Never the key itself."""
    principal: Principal = request.scope["state"]["tram.principal"]
    state = state_of(request)
    record = None if principal.is_master else await state.keys.get(principal.key_id)
    await state.usage.flush()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    usage = await usage_summary(state.database, "day", since, principal.key_id)
    visible = [pool.name for pool in state.registry if principal.may_use(pool.name)]
    return _json({
        "object": "me", "key_id": principal.key_id,
        "name": record.name if record is not None else "master key",
        "owner": record.owner if record is not None else None,
        "is_master": principal.is_master, "is_admin": principal.is_master or principal.is_admin,
        "models": visible,
        "limits": {name: getattr(record.limits, name) for name in LIMIT_FIELDS}
        if record is not None else None,
        "usage_by_day": sorted(usage, key=lambda row: row["day"] or ""),
    })


async def models_status(request: Request) -> Response:
    """Every model's replicas: health, circuit state, requests in flight, and the routes the
    model's engines serve (as tram.yaml says or as learned)."""
    require_admin(request)
    models = []
    for pool in state_of(request).registry:
        replicas = [{
            "url": replica.url, "served_name": replica.served_name,
            "healthy": replica.is_healthy(), "available": replica.available,
            "circuit": replica.health.state.value if replica.health is not None else "healthy",
            "in_flight": replica.outstanding, "weight": replica.weight,
        } for replica in pool.replicas]
        models.append({
            "id": pool.name, "vision": pool.config.vision,
            "description": pool.config.description, "in_flight": pool.in_flight,
            "policy": pool.config.routing.policy, "replicas": replicas,
            "routes_off": sorted(name for name, mode in pool.config.routes.items()
                                 if mode == "off"),
            "routes_lacking": sorted(pool.lacking),
        })
    return _json({"object": "list", "data": models})
