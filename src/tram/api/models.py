"""GET /v1/models and GET /v1/models/{model}: only what the caller's key may use."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tram.api.state import state_of
from tram.auth.principal import Principal
from tram.errors import ModelNotFound
from tram.protocol.models import Capabilities, ModelCard, ModelList
from tram.routing.registry import ModelPool

__all__ = ["get_model", "list_models"]


def _card(pool: ModelPool) -> ModelCard:
    """The alias as OpenAI lists a model, plus what its engine serves: the context window
    (the engine's own setting, else what its /models answer declared), and its capabilities."""
    engine = pool.config.engine
    learned = [r.context_window for r in pool.replicas if r.context_window]
    window = (engine.context_window() if engine else None) or (min(learned) if learned else None)
    return ModelCard(
        id=pool.name,
        created=pool.created,
        root=pool.served_name,
        vision=pool.config.vision,
        engine=engine.kind_name if engine else None,
        description=pool.config.description,
        max_model_len=window, context_window=window, max_output_tokens=window,
        capabilities=Capabilities(
            tools=engine.takes_tools() if engine else None, vision=pool.config.vision,
            reasoning=(engine.reasons() or pool.config.thinking is not None) if engine
            else None),
    )


def _json(model: ModelCard | ModelList) -> Response:
    return Response(model.model_dump_json(exclude_none=True), media_type="application/json")


async def list_models(request: Request) -> Response:
    principal: Principal = request.scope["state"]["tram.principal"]
    pools = [p for p in state_of(request).registry if principal.may_use(p.name)]
    return _json(ModelList(data=[_card(p) for p in pools]))


async def get_model(request: Request) -> Response:
    principal: Principal = request.scope["state"]["tram.principal"]
    name = request.path_params["model"]
    pool = state_of(request).registry.get(name)
    if pool is None or not principal.may_use(name):
        raise ModelNotFound(f"The model '{name}' does not exist or you do not have access to it.",
                            param="model")
    return _json(_card(pool))
