"""GET /admin/sharing (admins): each model's fair queue live, as the console's Sharing panel
shows it: its capacity now, what the queue started and what waits by class, each contending
key's class, weight and share, and tram.yaml's `sharing` settings (protocol/sharing.py)."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.admin import require_admin
from tram.api.state import AppState, state_of
from tram.relay.queueing import Queues
from tram.routing.registry import ModelPool
from tram.sharing.gate import Gate

__all__ = ["sharing_status"]

_MASTER = "master"


async def sharing_status(request: Request) -> Response:
    require_admin(request)
    state = state_of(request)
    sharing = state.config.sharing
    queue = sharing.queue
    names: dict[str, str | None] = {_MASTER: "master key"}
    models = [await _model(state, pool, names) for pool in state.registry]
    return Response(orjson.dumps({
        "object": "sharing", "priorities": dict(sharing.priorities),
        "queue": {"enabled": queue.enabled, "engine_signal": queue.engine_signal,
                  "max_queue": queue.max_queue, "max_per_key": queue.max_per_key,
                  "max_wait_seconds": dict(queue.max_wait_seconds),
                  "weights": {"interactive": 1.0, "batch": 1.0, **queue.weights},
                  "class_share": dict(queue.class_share),
                  "class_prompts": dict(queue.class_prompts),
                  "key_prompts": queue.key_prompts,
                  "prompt_tokens_per_second": queue.prompt_tokens_per_second},
        "data": models,
    }), media_type="application/json")


async def _model(state: AppState, pool: ModelPool,
                 names: dict[str, str | None]) -> dict[str, Any]:
    queues: Queues | None = state.models.queues
    gate: Gate | None = queues.find(pool.name) if queues is not None else None
    if queues is not None and queues.sharing.queue.enabled:
        capacity = queues.capacity(pool.name)
    else:
        capacity = pool.config.max_in_flight or math.inf
    bounded_by = None
    if pool.config.max_in_flight is not None:
        bounded_by = "max_in_flight"
    elif capacity != math.inf:
        bounded_by = "engine_queue"
    waiting = {"interactive": 0, "batch": 0}
    keys: list[dict[str, Any]] = []
    if gate is not None:
        for (cls, _), count in gate.queue.waiting().items():
            waiting[cls] = waiting.get(cls, 0) + count
        for entry in gate.shares(time.monotonic()):
            if entry.key not in names:
                record = await state.keys.get(entry.key)
                names[entry.key] = record.name if record is not None else None
            keys.append({"id": entry.key, "name": names[entry.key], "class": entry.cls,
                         "weight": entry.weight, "share": round(entry.share, 4),
                         "waiting": entry.waiting})
    return {
        "id": pool.name, "capacity": None if capacity == math.inf else int(capacity),
        "bounded_by": bounded_by, "in_flight": gate.queue.started if gate is not None else 0,
        "waiting": waiting, "admitted": gate.queue.admitted if gate is not None else 0,
        "keys": keys,
    }
