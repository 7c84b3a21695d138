"""GET /health (the process is alive) and GET /ready (every model has a reachable engine)."""

from __future__ import annotations

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.state import state_of
from tram.routing.registry import Replica

__all__ = ["health", "ready"]

_PROBE_TIMEOUT = 2.0


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")




async def ready(request: Request) -> Response:
    """Ready when each model has at least one replica answering its /models endpoint."""
    state = state_of(request)
    status: dict[str, str] = {}

    async def probe(name: str, replicas: list[Replica]) -> None:
        results = [r.available and await state.upstream.probe(r, _PROBE_TIMEOUT)
                   for r in replicas]
        status[name] = "ready" if any(results) else "unreachable"

    async with anyio.create_task_group() as group:
        for pool in state.registry:
            group.start_soon(probe, pool.name, pool.replicas)
    ok = all(v == "ready" for v in status.values())
    body = {"status": "ready" if ok else "not_ready", "models": status}
    return Response(orjson.dumps(body), status_code=200 if ok else 503,
                    media_type="application/json")
