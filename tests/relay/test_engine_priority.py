"""The priority a request carries to its engine (relay/steps.py `engine_priority`): its key's
class or number, batch lines at least the batch class's, a client's own lower priority kept and
a higher one capped, sent only where the engine schedules by it (or the model says `send`)."""

from __future__ import annotations

from typing import Any

import pytest

from tram.api.table import MODEL_ROUTES
from tram.auth.principal import Principal
from tram.config import parse_config
from tram.errors import InvalidRequest
from tram.relay.steps import engine_priority
from tram.routing.registry import ModelPool, Registry
from tram.sharing.classes import priority_of

ROUTES = {route.name: route for route in MODEL_ROUTES}
CLASSES = {"interactive": 0, "batch": 10}
UPSTREAM = [{"url": "http://127.0.0.1:9/v1"}]


def _pool(**model: Any) -> ModelPool:
    config = parse_config({"models": [{"name": "m", **model}]}, "test")
    pool = Registry.from_models(config.models).get("m")
    assert pool is not None
    return pool


def _sent(pool: ModelPool, route: str = "chat", key: str | int = "interactive",
          traffic: str = "interactive", **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": "m", **body}
    principal = Principal(key_id="k", is_master=False, priority=key)
    engine_priority(ROUTES[route], pool, principal, traffic, lambda: CLASSES, payload)
    return payload


def test_a_vllm_engine_with_its_preset_gets_each_keys_class() -> None:
    pool = _pool(engine={"kind": "vllm", "model": "Qwen/Qwen3-8B"})
    assert _sent(pool)["priority"] == 0
    assert _sent(pool, key="batch")["priority"] == 10
    assert _sent(pool, key=3)["priority"] == 3
    # A batch line runs at least at the batch class, whatever its key's own class.
    assert _sent(pool, traffic="batch")["priority"] == 10
    assert _sent(pool, key=20, traffic="batch")["priority"] == 20
    for route in ("completions", "embeddings", "responses", "rerank", "score"):
        assert _sent(pool, route, key="batch")["priority"] == 10
    # vLLM's Messages request has no priority field: nothing is added there, and a client's
    # own does not pass on its own either (a batch key must not reach the engine at -7).
    assert "priority" not in _sent(pool, "messages", key="batch")
    assert "priority" not in _sent(pool, "messages", key="batch", priority=-7)
    assert "priority" not in _sent(pool, "tokenize", priority=-7)


def test_a_client_may_lower_its_priority_but_not_raise_it() -> None:
    pool = _pool(engine={"kind": "vllm", "model": "Qwen/Qwen3-8B"})
    assert _sent(pool, priority=50)["priority"] == 50
    assert _sent(pool, key="batch", priority=-100)["priority"] == 10
    with pytest.raises(InvalidRequest) as refused:
        _sent(pool, priority="high")
    assert refused.value.param == "priority"
    with pytest.raises(InvalidRequest):
        _sent(pool, priority=True)


@pytest.mark.parametrize("model", [
    {"engine": {"kind": "vllm", "model": "Qwen/Qwen3-8B", "scheduling_policy": "fcfs"}},
    {"engine": {"kind": "vllm", "model": "Qwen/Qwen3-8B", "preset": "none"}},
    {"engine": {"kind": "vllm", "model": "Qwen/Qwen3-8B"}, "engine_priority": "off"},
    {"upstreams": UPSTREAM},  # an engine Trạm knows nothing of
])
def test_engines_that_do_not_schedule_by_priority_get_none(model: dict[str, Any]) -> None:
    pool = _pool(**model)
    assert "priority" not in _sent(pool, key="batch")
    assert "priority" not in _sent(pool, priority=5)  # the gateway's choice, not the client's


def test_an_external_vllm_started_with_the_flag_is_sent_it_when_the_model_says() -> None:
    assert _sent(_pool(upstreams=UPSTREAM, engine_priority="send"), key="batch")["priority"] == 10


def test_unknown_class_names_fall_back_to_interactive() -> None:
    assert priority_of("interactive", "interactive", CLASSES) == 0
    assert priority_of("nightly", "interactive", CLASSES) == 0
    assert priority_of(-5, "batch", CLASSES) == 10
