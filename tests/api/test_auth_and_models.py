from __future__ import annotations

import httpx
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory


def assert_error(response: httpx.Response, status: int, code: str | None, type_: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["type"] == type_
    assert len(error["message"]) > 10
    return error


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer wrong-key-123456"}, "invalid_api_key"),
        ({"Authorization": f"Basic {MASTER_KEY}"}, "invalid_api_key"),
        ({"Authorization": "Bearer"}, "invalid_api_key"),
    ],
)
def test_every_v1_route_needs_a_valid_key(gateway: GatewayFactory, headers: dict, code: str) -> None:
    with gateway() as url:
        for method, path in [("GET", "/v1/models"), ("GET", "/v1/models/qwen-text"),
                             ("POST", "/v1/chat/completions"), ("GET", "/v1/nope")]:
            response = httpx.request(method, url + path, headers=headers, json={})
            error = assert_error(response, 401, code, "invalid_request_error")
            assert "wrong-key" not in error["message"]
            assert response.headers["www-authenticate"] == "Bearer"


def test_health_and_ready_need_no_key(gateway: GatewayFactory) -> None:
    with gateway() as url:
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        ready = httpx.get(url + "/ready")
        assert ready.status_code == 200
        assert ready.json()["models"]["qwen-text"] == "ready"


def test_ready_is_503_when_an_engine_is_unreachable(gateway: GatewayFactory) -> None:
    models = [{"name": "down", "upstreams": [{"url": "http://127.0.0.1:9/v1"}]}]
    with gateway(models=models) as url:
        ready = httpx.get(url + "/ready")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "models": {"down": "unreachable"}}


def test_models_list_is_openai_shaped_and_names_the_engine_model(gateway: GatewayFactory,
                                                                 auth: dict) -> None:
    with gateway() as url:
        body = httpx.get(url + "/v1/models", headers=auth).json()
    assert body["object"] == "list"
    cards = {card["id"]: card for card in body["data"]}
    assert {"qwen-text", "qwen-vl", "m-echo"} <= set(cards)
    text = cards["qwen-text"]
    assert text["object"] == "model"
    assert isinstance(text["created"], int)
    assert text["owned_by"] == "tram"
    assert text["root"] == "echo"
    assert text["vision"] is False
    assert cards["qwen-vl"]["vision"] is True


def test_get_one_model_and_unknown_model(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        card = httpx.get(url + "/v1/models/qwen-vl", headers=auth).json()
        assert card["id"] == "qwen-vl"
        assert card["object"] == "model"
        missing = httpx.get(url + "/v1/models/gpt-4", headers=auth)
    error = assert_error(missing, 404, "model_not_found", "invalid_request_error")
    assert "gpt-4" in error["message"]


def test_unknown_route_and_wrong_method_are_openai_errors(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        assert_error(httpx.get(url + "/v1/nope", headers=auth), 404, "not_found",
                     "invalid_request_error")
        assert_error(httpx.get(url + "/v1/chat/completions", headers=auth), 405,
                     "method_not_allowed", "invalid_request_error")


def test_request_id_is_honoured_or_created(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        given = httpx.get(url + "/v1/models", headers={**auth, "X-Request-ID": "abc-123"})
        made = httpx.get(url + "/v1/models", headers=auth)
        refused = httpx.get(url + "/health", headers={"X-Request-ID": "bad id\twith junk"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert refused.headers["x-request-id"] != "bad id\twith junk"


def test_x_api_key_is_taken_on_the_client_api_only(gateway: GatewayFactory) -> None:
    """Anthropic's header is for Anthropic's clients: the client API takes it, the admin API
    and the metrics need `Authorization: Bearer` (issue 23, item 13)."""
    key = {"x-api-key": MASTER_KEY}
    with gateway() as url:
        assert httpx.get(url + "/v1/models", headers=key).status_code == 200
        for path in ("/admin/keys", "/admin/usage", "/metrics"):
            refused = httpx.get(url + path, headers=key)
            assert refused.status_code == 401, (path, refused.text)
            assert refused.json()["error"]["code"] == "missing_api_key"
