"""Every route held to chat's rules (issue 23): media parts on native Responses and Messages
are vetted exactly as chat's (addresses, types, sizes, pixel budget, fetched by the gateway,
forwarded as data); loosely typed known fields and malformed items are 400s on every route;
a multipart upload cannot name a second model. The engine is the fault-injection echo engine:
what it received is what a real engine would have been sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.images import data_url, png
from tests.support.route_engine import RouteLog, route_engine
from tests.support.servers import serve_app

METADATA = "http://169.254.169.254/latest/meta-data/x.png"  # an IP literal: nothing resolved
LOOPBACK = "http://127.0.0.1:9/x.png"


def _models(url: str) -> list[dict[str, Any]]:
    vision = {"vision": True, "image_fetch": "gateway", "max_pixels": 64 * 64,
              "routes": {"responses": "native", "messages": "native"},
              "upstreams": [{"url": url, "served_name": "echo"}]}
    return [{"name": "vl", **vision},
            {"name": "text", "routes": {"responses": "native", "messages": "native"},
             "upstreams": [{"url": url, "served_name": "echo"}]}]


@pytest.fixture
def gateway_url(gateway: GatewayFactory,
                fault_engine_server: tuple[str, EngineLog]) -> Any:
    with gateway(models=_models(fault_engine_server[0])) as url:
        yield url


def _responses(image: dict[str, Any], model: str = "vl") -> dict[str, Any]:
    return {"model": model, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"}, image]}]}


def _messages(block: dict[str, Any], model: str = "vl") -> dict[str, Any]:
    return {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, block]}]}


CASES = {
    "responses input_image": ("/v1/responses", _responses(
        {"type": "input_image", "image_url": METADATA}), "input[0].content[1].image_url"),
    "responses input_image loopback": ("/v1/responses", _responses(
        {"type": "input_image", "image_url": LOOPBACK}), "input[0].content[1].image_url"),
    "messages image url": ("/v1/messages", _messages(
        {"type": "image", "source": {"type": "url", "url": METADATA}}),
        "messages[0].content[1].source"),
    "messages image in a tool result": ("/v1/messages", {
        "model": "vl", "max_tokens": 16, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "image", "source": {"type": "url", "url": METADATA}}]}]}]},
        "messages[2].content[0].content[0].source"),
}


@pytest.mark.parametrize("case", CASES)
def test_private_image_urls_are_refused_on_native_routes(
        gateway_url: str, auth: dict, engine_log: EngineLog, case: str) -> None:
    path, body, param = CASES[case]
    answer = httpx.post(gateway_url + path, headers=auth, json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    code = error.get("code") or answer.json().get("error", {}).get("type")
    if path == "/v1/messages":  # Anthropic's shape: the message names the part
        assert "address" in error["message"]
    else:
        assert code == "image_address_not_allowed" and error["param"] == param
    assert engine_log.received == []  # no engine saw the URL


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/responses", _responses({"type": "input_file", "file_url": METADATA})),
    ("/v1/responses", _responses({"type": "input_image", "file_id": "file-1"})),
    ("/v1/responses", _responses({"type": "video_url", "video_url": {"url": METADATA}})),
    ("/v1/responses", _responses({"type": "input_audio", "input_audio": {"data": "AAAA",
                                                                        "format": "wav"}})),
    ("/v1/messages", _messages({"type": "document", "source": {"type": "url",
                                                               "url": METADATA}})),
])
def test_forms_an_engine_would_fetch_itself_are_refused_by_name(
        gateway_url: str, auth: dict, engine_log: EngineLog, path: str,
        body: dict[str, Any]) -> None:
    answer = httpx.post(gateway_url + path, headers=auth, json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert engine_log.received == []


def test_images_on_native_routes_are_fitted_and_sent_as_data(gateway: GatewayFactory,
                                                             auth: dict) -> None:
    log = RouteLog()
    big = data_url(png(256, 256))
    with serve_app(route_engine(log)) as engine, gateway(models=_models(engine + "/v1")) as url:
        answer = httpx.post(url + "/v1/responses", headers=auth, timeout=30,
                            json=_responses({"type": "input_image", "image_url": big}))
        assert answer.status_code == 200, answer.text
        block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": big.split(",", 1)[1]}}
        answer = httpx.post(url + "/v1/messages", headers=auth, json=_messages(block), timeout=30)
        assert answer.status_code == 200, answer.text
    sent = log.bodies("/v1/responses")[-1]["input"][0]["content"][1]["image_url"]
    assert sent.startswith("data:image/png;base64,") and sent != big  # downscaled to 64×64
    source = log.bodies("/v1/messages")[-1]["messages"][0]["content"][1]["source"]
    assert source["type"] == "base64" and source["data"] != block["source"]["data"]


def test_a_text_model_refuses_images_on_every_route(gateway_url: str, auth: dict,
                                                    engine_log: EngineLog) -> None:
    small = data_url(png(8, 8))
    for path, body in (("/v1/responses", _responses({"type": "input_image", "image_url": small},
                                                    "text")),
                       ("/v1/messages", _messages({"type": "image", "source": {
                           "type": "base64", "media_type": "image/png",
                           "data": small.split(",", 1)[1]}}, "text"))):
        answer = httpx.post(gateway_url + path, headers=auth, json=body, timeout=30)
        assert answer.status_code == 400, answer.text
    assert engine_log.received == []


LOOSE = [
    ("/v1/completions", {"model": "text", "prompt": "hi", "temperature": "0.5"}, "temperature"),
    ("/v1/embeddings", {"model": "text", "input": "hi", "temperature": "0.5"}, "temperature"),
    ("/v1/messages", {"model": "text", "max_tokens": 5, "temperature": "0.5",
                      "messages": [{"role": "user", "content": "hi"}]}, "temperature"),
    ("/v1/responses", {"model": "text", "input": "hi", "temperature": "0.5"}, "temperature"),
    ("/v1/rerank", {"model": "text", "query": "q", "documents": ["a"], "temperature": "0.5"},
     "temperature"),
    ("/v1/responses", {"model": "text", "input": [{"role": "root", "content": "hi"}]},
     "input[0].role"),
    ("/v1/responses", {"model": "text", "input": [{"role": "user", "content": 5}]},
     "input[0].content"),
    ("/v1/messages", {"model": "text", "max_tokens": 5, "messages": [{"role": "root",
                                                                      "content": "hi"}]},
     "messages[0].role"),
    ("/v1/completions", {"model": "text", "prompt": "hi", "max_tokens": True}, "max_tokens"),
]


@pytest.mark.parametrize(("path", "body", "param"), LOOSE)
def test_loose_types_are_400s_on_every_route(gateway_url: str, auth: dict,
                                             engine_log: EngineLog, path: str,
                                             body: dict[str, Any], param: str) -> None:
    answer = httpx.post(gateway_url + path, headers=auth, json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    if path != "/v1/messages":
        assert answer.json()["error"]["param"] == param
    assert engine_log.received == []


def test_a_conversations_cache_key_keeps_it_on_one_replica(gateway: GatewayFactory,
                                                          auth: dict) -> None:
    """Codex names its conversation with prompt_cache_key: every turn of it goes to the same
    replica (where its prefix is cached), whatever else changes; other keys spread."""
    logs = [RouteLog(), RouteLog()]
    with serve_app(route_engine(logs[0])) as first, serve_app(route_engine(logs[1])) as second:
        models = [{"name": "m", "routing": {"policy": "cache_aware", "scrape_metrics": False},
                   "upstreams": [{"url": first + "/v1", "served_name": "f"},
                                 {"url": second + "/v1", "served_name": "f"}]}]
        with gateway(models=models) as url:
            for turn in range(6):
                answer = httpx.post(url + "/v1/responses", headers=auth, timeout=30, json={
                    "model": "m", "prompt_cache_key": "conversation-1",
                    "input": f"turn {turn} " + "x" * (700 * turn)})
                assert answer.status_code == 200, answer.text
            counts = [len(log.bodies("/v1/responses")) for log in logs]
            assert sorted(counts) == [0, 6], counts
            for n in range(12):
                httpx.post(url + "/v1/responses", headers=auth, timeout=30, json={
                    "model": "m", "prompt_cache_key": f"conversation-{n + 2}", "input": "hi"})
    assert all(len(log.bodies("/v1/responses")) > 0 for log in logs)
