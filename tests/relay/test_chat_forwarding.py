"""Non-streaming chat: validation, alias rewriting, pass-through, and every engine failure."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from tests.api.test_auth_and_models import assert_error
from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()
USER = [{"role": "user", "content": "hi"}]


def post(url: str, auth: dict, body: object) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=auth, json=body, timeout=30)


def test_alias_is_rewritten_both_ways_and_unknown_fields_pass_through(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog) -> None:
    body = {"model": "qwen-text", "messages": USER, "temperature": 0.7, "top_k": 20,
            "repetition_penalty": 1.05, "chat_template_kwargs": {"enable_thinking": False},
            "some_future_field": [1, {"x": None}]}
    with gateway() as url:
        response = post(url, {**auth, "X-Request-ID": "req-42"}, body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["model"] == "qwen-text"
    assert answer["choices"][0]["message"]["content"] == "fake answer"
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert engine_log.received[-1] == {**body, "model": "echo"}
    assert engine_log.headers[-1]["x-request-id"] == "req-42"
    assert response.headers["x-request-id"] == "req-42"


def test_upstream_api_key_is_sent_to_the_engine_not_the_clients(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog,
        fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "keyed", "upstreams": [{"url": fault_engine_server[0],
                                               "served_name": "echo", "api_key": "engine-secret"}]}]
    with gateway(models=models) as url:
        assert post(url, auth, {"model": "keyed", "messages": USER}).status_code == 200
    assert engine_log.headers[-1]["authorization"] == "Bearer engine-secret"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": USER}, "model", "missing_required_parameter"),
        ({"model": "qwen-text"}, "messages", "missing_required_parameter"),
        ({"model": "qwen-text", "messages": []}, "messages", "invalid_value"),
        ({"model": "qwen-text", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "qwen-text", "messages": [{"role": "wizard", "content": "x"}]},
         "messages[0].role", "invalid_value"),
        ({"model": "qwen-text", "messages": [{"role": "user", "content": 5}]},
         "messages[0].content", "invalid_type"),
        ({"model": "qwen-text", "messages": USER, "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"model": "qwen-text", "messages": USER, "max_tokens": "10"}, "max_tokens", "invalid_type"),
        ({"model": "qwen-text", "messages": USER, "temperature": 3}, "temperature", "invalid_value"),
        ({"model": "qwen-text", "messages": USER, "stream": "yes"}, "stream", "invalid_type"),
        ({"model": 7, "messages": USER}, "model", "invalid_type"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(gateway: GatewayFactory, auth: dict,
                                                   engine_log: EngineLog, body: dict, param: str,
                                                   code: str) -> None:
    with gateway() as url:
        error = assert_error(post(url, auth, body), 400, code, "invalid_request_error")
    assert error["param"] == param
    assert param.split("[", maxsplit=1)[0].split(".", maxsplit=1)[0] in error["message"]
    assert engine_log.received == []


def test_malformed_json_and_non_object_bodies(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        bad = httpx.post(url + "/v1/chat/completions", headers=auth, content=b'{"model": ')
        empty = httpx.post(url + "/v1/chat/completions", headers=auth, content=b"")
        array = post(url, auth, [1, 2])
    assert "not valid JSON" in assert_error(bad, 400, "invalid_json", "invalid_request_error")["message"]
    assert_error(empty, 400, "invalid_json", "invalid_request_error")
    assert_error(array, 400, "invalid_type", "invalid_request_error")


def test_body_over_the_limit_is_413(gateway: GatewayFactory, auth: dict, engine_log: EngineLog) -> None:
    big = {"model": "qwen-text", "messages": [{"role": "user", "content": "x" * 5000}]}
    with gateway(server={"max_body_bytes": 4096}) as url:
        error = assert_error(post(url, auth, big), 413, "request_too_large", "invalid_request_error")
        chunked = httpx.post(url + "/v1/chat/completions", headers=auth,
                             content=iter([b"{" + b" " * 3000, b" " * 3000 + b"}"]))
    assert "4096" in error["message"]
    assert_error(chunked, 413, "request_too_large", "invalid_request_error")
    assert engine_log.received == []


def test_unknown_model_is_404_and_lists_what_exists(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        error = assert_error(post(url, auth, {"model": "gpt-5", "messages": USER}), 404,
                             "model_not_found", "invalid_request_error")
    assert error["param"] == "model"
    assert "gpt-5" in error["message"] and "qwen-text" in error["message"]


def test_missing_vision_model_says_how_to_add_one(gateway: GatewayFactory, auth: dict,
                                                  fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "qwen-text", "upstreams": [{"url": fault_engine_server[0], "served_name": "echo"}]}]
    with gateway(models=models) as url:
        error = assert_error(post(url, auth, {"model": "qwen-vl", "messages": USER}), 404,
                             "model_not_found", "invalid_request_error")
    assert "tram up --model qwen-vl=" in error["message"]


def vision_message(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def test_images_to_a_text_model_are_refused_naming_the_model(gateway: GatewayFactory, auth: dict,
                                                             engine_log: EngineLog) -> None:
    with gateway() as url:
        error = assert_error(post(url, auth, {"model": "qwen-text",
                                              "messages": vision_message(PNG_DATA_URL)}),
                             400, "images_not_supported", "invalid_request_error")
    assert "qwen-text" in error["message"] and "qwen-vl" in error["message"]
    assert error["param"] == "messages[0].content[1]"
    assert engine_log.received == []


def test_images_to_a_vision_model_are_forwarded_untouched(gateway: GatewayFactory, auth: dict,
                                                          engine_log: EngineLog) -> None:
    messages = vision_message(PNG_DATA_URL) + vision_message("https://example.com/image.jpg")
    with gateway() as url:
        response = post(url, auth, {"model": "qwen-vl", "messages": messages, "max_tokens": 300})
    assert response.status_code == 200, response.text
    assert engine_log.received[-1]["messages"] == messages


@pytest.mark.parametrize(
    ("image_url", "code"),
    [
        ("data:image/png;base64,!!!notbase64", "invalid_image_url"),
        ("data:image/png;base64," + base64.b64encode(b"GIF89a....").decode(), "invalid_image_format"),
        ("data:image/tiff;base64," + base64.b64encode(PNG_1PX).decode(), "invalid_image_format"),
        ("data:text/plain,hello", "invalid_image_url"),
        ("ftp://example.com/a.png", "invalid_image_url"),
        ("data:image/png;base64," + base64.b64encode(PNG_1PX + b"\0" * 20000).decode(), "image_too_large"),
    ],
)
def test_bad_images_are_400(gateway: GatewayFactory, auth: dict, engine_log: EngineLog,
                            image_url: str, code: str) -> None:
    with gateway(vision={"max_image_bytes": 16384}) as url:
        error = assert_error(post(url, auth, {"model": "qwen-vl", "messages": vision_message(image_url)}),
                             400, code, "invalid_request_error")
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert engine_log.received == []


@pytest.mark.parametrize(
    ("model", "status", "code", "type_", "in_message"),
    [
        ("m-error-400", 400, None, "BadRequestError", "engine says 400"),
        ("m-error-404", 404, None, "BadRequestError", "engine says 404"),
        ("m-error-500", 502, "bad_gateway", "upstream_error", "engine exploded"),
        ("m-error-503", 503, "engine_unavailable", "service_unavailable_error", "engine says 503"),
        ("m-not-json", 502, "bad_gateway", "upstream_error", "not valid JSON"),
        ("m-hang", 504, "engine_timeout", "timeout_error", "total time limit of 1.5s"),
    ],
)
def test_engine_failures_map_to_truthful_statuses(gateway: GatewayFactory, auth: dict, model: str,
                                                  status: int, code: str | None, type_: str,
                                                  in_message: str) -> None:
    with gateway(timeouts={"first_byte": 1.5, "total": 1.5}) as url:
        error = assert_error(post(url, auth, {"model": model, "messages": USER}), status, code, type_)
    assert in_message in error["message"]


def test_unreachable_engine_is_502_quickly(gateway: GatewayFactory, auth: dict) -> None:
    models = [{"name": "down", "upstreams": [{"url": "http://127.0.0.1:9/v1"}]}]
    with gateway(models=models) as url:
        started = time.monotonic()
        error = assert_error(post(url, auth, {"model": "down", "messages": USER}), 502,
                             "engine_unreachable", "upstream_error")
    assert time.monotonic() - started < 3
    assert "unreachable" in error["message"]


def test_client_leaving_a_slow_answer_cancels_the_engine_request(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog) -> None:
    with gateway() as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json={"model": "m-slow-json", "messages": USER},
                       headers={**auth, "X-Request-ID": "leave-json"}, timeout=0.5)
        deadline = time.monotonic() + 5
        while "leave-json" not in engine_log.cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
    assert engine_log.cancelled == ["leave-json"]


def test_default_max_tokens_applies_only_when_the_client_sets_no_limit(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog,
        fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "capped", "default_max_tokens": 64,
               "upstreams": [{"url": fault_engine_server[0], "served_name": "echo"}]}]
    with gateway(models=models) as url:
        post(url, auth, {"model": "capped", "messages": USER})
        post(url, auth, {"model": "capped", "messages": USER, "max_tokens": 5})
        post(url, auth, {"model": "capped", "messages": USER, "max_completion_tokens": 7})
    sent = engine_log.received
    assert sent[0]["max_tokens"] == 64
    assert sent[1]["max_tokens"] == 5
    assert "max_tokens" not in sent[2] and sent[2]["max_completion_tokens"] == 7
