"""Admin routes (the master key or an admin-scoped key): POST /admin/reload, GET /metrics."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.state import AppState, state_of
from tram.auth.principal import Principal
from tram.config import ConfigError, load_config
from tram.errors import InvalidRequest
from tram.keys.service import require_administrator

__all__ = ["metrics", "reload", "reload_config", "require_admin"]


def require_admin(request: Request) -> Principal:
    principal: Principal = request.scope["state"]["tram.principal"]
    return require_administrator(principal)


def reload_config(state: AppState) -> list[str]:
    """Re-read tram.yaml and swap the model registry; in-flight requests are not touched."""
    path = state.settings.config_path
    if path is None:
        raise ConfigError("no config file to reload (this instance runs the built-in profile)")
    config = load_config(path, state.settings.env)
    state.models.check_config(config.models)
    state.registry.replace(config.models)
    if state.models.queues is not None:
        state.models.queues.configure(config.sharing)
    state.config = config
    return [model.name for model in config.models]


async def reload(request: Request) -> Response:
    require_admin(request)
    try:
        models = reload_config(state_of(request))
    except ConfigError as exc:
        raise InvalidRequest(f"Reload refused, the running config is unchanged: {exc}",
                             code="invalid_config") from None
    return Response(orjson.dumps({"status": "reloaded", "models": models}),
                    media_type="application/json")


async def metrics(request: Request) -> Response:
    require_admin(request)
    state = state_of(request)
    # Gauges are read from the registry when scraped, not kept up to date on every request.
    for pool in state.registry:
        for replica in pool.replicas:
            state.metrics.healthy.labels(pool.name, replica.url).set(1 if replica.is_healthy() else 0)
            state.metrics.in_flight.labels(pool.name, replica.url).set(replica.outstanding)
            if len(pool.replicas) > 1:
                state.metrics.prefix_hit_estimate.labels(pool.name, replica.url).set(
                    round(replica.prefix_hit_estimate, 4))
                state.metrics.engine_penalty.labels(pool.name, replica.url).set(
                    replica.engine_penalty)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
