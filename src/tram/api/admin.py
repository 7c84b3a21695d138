"""Admin routes (master key only): POST /admin/reload and GET /metrics."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.state import AppState, state_of
from tram.auth.keys import Principal
from tram.config import ConfigError, load_config
from tram.errors import InvalidRequest, PermissionDenied

__all__ = ["metrics", "reload", "reload_config", "require_master"]


def require_master(request: Request) -> None:
    principal: Principal = request.scope["state"]["tram.principal"]
    if not principal.is_master:
        raise PermissionDenied("Only the master key may use the admin API.")


def reload_config(state: AppState) -> list[str]:
    """Re-read tram.yaml and swap the model registry; in-flight requests are not touched."""
    path = state.settings.config_path
    if path is None:
        raise ConfigError("no config file to reload (this instance runs the built-in profile)")
    config = load_config(path, state.settings.env)
    state.registry.replace(config.models)
    state.config = config
    return [model.name for model in config.models]


async def reload(request: Request) -> Response:
    require_master(request)
    try:
        models = reload_config(state_of(request))
    except ConfigError as exc:
        raise InvalidRequest(f"Reload refused, the running config is unchanged: {exc}",
                             code="invalid_config") from None
    return Response(orjson.dumps({"status": "reloaded", "models": models}),
                    media_type="application/json")


async def metrics(request: Request) -> Response:
    require_master(request)
    state = state_of(request)
    for pool in state.registry:
        for replica in pool.replicas:
            state.metrics.healthy.labels(pool.name, replica.url).set(1 if replica.is_healthy() else 0)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
