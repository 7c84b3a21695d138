"""Every route besides chat, through the gateway, with the clients people use (`openai`,
`anthropic`): forwarded to an engine that serves it (the fake route engine, in vLLM's shapes),
bridged to chat or refused by name when the engine lacks it (the fault engine serves chat
only), with the key's scope and budget, and one usage row per request, by route."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fault_engine import EngineLog
from tests.support.keys import chat, key_with
from tests.support.route_engine import RouteLog, route_engine
from tests.support.servers import serve_app
from tram.app import create_app
from tram.config import Settings, parse_config

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[str, RouteLog]]:
    log = RouteLog()
    with serve_app(route_engine(log)) as url:
        yield url + "/v1", log


@pytest.fixture
def routes_log(engine: tuple[str, RouteLog]) -> RouteLog:
    engine[1].received.clear()
    return engine[1]


@contextmanager
def gateway(settings: Settings, models: list[dict[str, Any]]) -> Iterator[str]:
    with serve_app(create_app(settings, parse_config({"models": models}, "test"))) as url:
        yield url


def _models(engine_url: str, fault_url: str) -> list[dict[str, Any]]:
    return [
        {"name": "full", "upstreams": [{"url": engine_url, "served_name": "engine-full"}]},
        {"name": "bridged", "routes": {"responses": "bridge", "messages": "bridge"},
         "upstreams": [{"url": engine_url, "served_name": "engine-bridged"}]},
        {"name": "chat-only", "upstreams": [{"url": fault_url, "served_name": "echo"}]},
        {"name": "chat-only-stream", "upstreams": [{"url": fault_url, "served_name": "stream"}]},
        {"name": "chat-only-slow", "upstreams": [{"url": fault_url,
                                                  "served_name": "slow-stream"}]},
        {"name": "no-embed", "routes": {"embeddings": "off"},
         "upstreams": [{"url": engine_url, "served_name": "engine-full"}]},
    ]


@pytest.fixture
def url(settings: Settings, engine: tuple[str, RouteLog],
        fault_engine_server: tuple[str, EngineLog]) -> Iterator[str]:
    with gateway(settings, _models(engine[0], fault_engine_server[0])) as running:
        yield running


def _usage_by_route(url: str) -> dict[str, dict[str, Any]]:
    rows = httpx.get(url + "/admin/usage", params={"by": "route"}, headers=AUTH).json()["data"]
    return {row["route"]: row for row in rows}


def test_each_route_reaches_the_engine_with_its_served_name(url: str,
                                                            routes_log: RouteLog) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY)
    completion = client.completions.create(model="full", prompt="Once", max_tokens=3)
    assert completion.choices[0].text == " upon a time" and completion.model == "full"
    embedded = client.embeddings.create(model="full", input=["a", "b"])
    assert [d.embedding for d in embedded.data] == [[0.1, 0.2, 0.3]] * 2
    assert embedded.model == "full" and embedded.usage.prompt_tokens == 10
    for path in ("/v1/rerank", "/rerank"):
        reranked = httpx.post(url + path, headers=AUTH, json={
            "model": "full", "query": "q", "documents": ["x", "y"]})
        assert reranked.status_code == 200 and len(reranked.json()["results"]) == 2
        assert reranked.json()["model"] == "full"
    scored = httpx.post(url + "/v1/score", headers=AUTH,
                        json={"model": "full", "text_1": "a", "text_2": "b"})
    assert scored.json()["data"][0]["score"] == 0.9
    tokens = httpx.post(url + "/tokenize", headers=AUTH, json={"model": "full", "prompt": "a"})
    text = httpx.post(url + "/detokenize", headers=AUTH, json={"model": "full", "tokens": [1]})
    assert tokens.json()["tokens"] == [1, 2, 3] and text.json()["prompt"] == "a b c"
    audio = io.BytesIO(b"RIFF" + bytes(range(256)) * 40)
    audio.name = "clip.wav"
    heard = client.audio.transcriptions.create(model="full", file=audio)
    assert heard.text == f"{4 + 256 * 40} bytes heard"

    paths = [path for path, _ in routes_log.received]
    assert paths == ["/v1/completions", "/v1/embeddings", "/v1/rerank", "/v1/rerank",
                     "/v1/score", "/tokenize", "/detokenize", "/v1/audio/transcriptions"]
    assert all(body["model"] == "engine-full" for _, body in routes_log.received)
    assert routes_log.bodies("/v1/audio/transcriptions")[0]["filename"] == "clip.wav"

    by_route = _usage_by_route(url)
    assert by_route["completions"]["requests"] == 1
    assert by_route["completions"]["prompt_tokens"] == 4
    assert by_route["completions"]["completion_tokens"] == 3
    assert by_route["embeddings"]["prompt_tokens"] == 10
    assert by_route["rerank"]["requests"] == 2 and by_route["rerank"]["prompt_tokens"] == 24
    assert by_route["score"]["prompt_tokens"] == 6
    assert by_route["tokenize"]["requests"] == by_route["detokenize"]["requests"] == 1
    assert by_route["transcriptions"]["requests"] == 1
    assert "chat" not in by_route
    metrics = httpx.get(url + "/metrics", headers=AUTH).text
    assert 'tram_requests_total{model="full",route="rerank",status="200"} 2.0' in metrics


def test_completions_stream_is_charged_without_showing_usage_unasked(
        url: str, routes_log: RouteLog) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY)
    chunks = list(client.completions.create(model="full", prompt="Once", max_tokens=3,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == " upon a time"
    assert all(c.usage is None for c in chunks)  # not asked: kept from the client
    assert routes_log.bodies("/v1/completions")[0]["stream_options"]["include_usage"] is True
    row = _usage_by_route(url)["completions"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["estimated_requests"]) == \
        (4, 3, 0)


def test_a_route_the_engine_lacks_is_a_404_naming_route_and_model(url: str,
                                                                  routes_log: RouteLog) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as lacking:
        client.embeddings.create(model="chat-only", input="a")
    error = lacking.value.body
    assert isinstance(error, dict) and error["code"] == "route_not_supported"
    assert "'chat-only'" in error["message"] and "/v1/embeddings" in error["message"]
    with pytest.raises(openai.NotFoundError) as off:
        client.embeddings.create(model="no-embed", input="a")
    assert "tram.yaml" in str(off.value) and routes_log.received == []  # never sent
    rerank = httpx.post(url + "/v1/rerank", headers=AUTH,
                        json={"model": "chat-only", "query": "q", "documents": ["d"]})
    assert rerank.status_code == 404 and rerank.json()["error"]["code"] == "route_not_supported"
    by_route = _usage_by_route(url)
    assert by_route["embeddings"]["errors"] == 2 and by_route["rerank"]["errors"] == 1


def test_responses_bridged_where_the_engine_has_none(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY)
    answer = client.responses.create(model="chat-only", input="hi", instructions="Be brief.")
    assert answer.output_text == "fake answer" and answer.model == "chat-only"
    assert answer.status == "completed" and answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (7, 2)
    with client.responses.stream(model="chat-only-stream", input="hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "t0 t1 t2 t3 t4 " == final.output_text
    assert final.usage is not None and final.usage.output_tokens == 5
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_responses_bridge_carries_tools_reasoning_and_the_conversation(
        url: str, routes_log: RouteLog) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY)
    tool = {"type": "function", "name": "weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    first = client.responses.create(model="bridged", input="Weather in Hanoi?", tools=[tool])
    call = next(item for item in first.output if item.type == "function_call")
    assert (call.name, call.arguments) == ("weather", '{"city": "Hanoi"}')
    second = client.responses.create(model="bridged", previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "31°C"}])
    assert second.output_text == "route engine answer"
    assert second.output[0].type == "reasoning"
    sent = routes_log.bodies("/v1/chat/completions")[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "weather"
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "31°C"}
    with client.responses.stream(model="bridged", input="Weather?", tools=[tool]) as stream:
        done = [e for e in stream if e.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    assert done[0].arguments == '{"city": "Hanoi"}'
    assert final.output[0].type == "function_call"


def test_responses_native_engine_gets_the_whole_conversation(url: str,
                                                            routes_log: RouteLog) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY)
    first = client.responses.create(model="full", input="one")
    assert first.id.startswith("resp_") and first.id != "resp_engine"
    with client.responses.stream(model="full", input="two", previous_response_id=first.id) as s:
        second = s.get_final_response()
    third = client.responses.create(model="full", input="three", previous_response_id=second.id)
    assert third.output_text == "native answer to 5 items"  # 3 inputs + 2 answers
    sent = routes_log.bodies("/v1/responses")[-1]
    assert sent["store"] is False and "previous_response_id" not in sent
    assert [item.get("role") for item in sent["input"]] == \
        ["user", "assistant", "user", "assistant", "user"]
    assert client.responses.retrieve(second.id).previous_response_id == first.id


def test_stored_responses_belong_to_their_key(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0)
    mine = client.responses.create(model="full", input="secret plans")
    other_headers = key_with(url, AUTH)
    other = openai.OpenAI(base_url=url + "/v1", max_retries=0,
                          api_key=other_headers["Authorization"].split()[1])
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="full", input="more", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    unstored = client.responses.create(model="full", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    client.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(mine.id)


def test_anthropic_messages_native_and_bridged(url: str, routes_log: RouteLog) -> None:
    client = anthropic.Anthropic(base_url=url, api_key=MASTER_KEY)
    native = client.messages.create(model="full", max_tokens=20, messages=USER)
    assert native.content[0].text == "native message" and native.model == "full"
    with client.messages.stream(model="full", max_tokens=20, messages=USER) as stream:
        assert stream.get_final_message().content[0].text == "native message"
    bridged = client.messages.create(model="bridged", max_tokens=20, system="Be brief.",
                                     messages=USER, thinking={"type": "enabled",
                                                              "budget_tokens": 1024})
    assert [block.type for block in bridged.content] == ["thinking", "text"]
    assert bridged.content[1].text == "route engine answer"  # type: ignore[union-attr]
    assert bridged.stop_reason == "end_turn" and bridged.usage.input_tokens == 11
    sent = routes_log.bodies("/v1/chat/completions")[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}
    assert sent["max_tokens"] == 20
    with client.messages.stream(model="bridged", max_tokens=20, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "route engine answer" and final.usage.output_tokens == 3


def test_anthropic_tool_use_round_trip_over_the_bridge(url: str, routes_log: RouteLog) -> None:
    client = anthropic.Anthropic(base_url=url, api_key=MASTER_KEY)
    tools: Any = [{"name": "weather", "description": "Weather in a city",
                   "input_schema": {"type": "object",
                                    "properties": {"city": {"type": "string"}}}}]
    asked = client.messages.create(model="bridged", max_tokens=50, tools=tools,
                                   messages=[{"role": "user", "content": "Hanoi weather?"}])
    use = asked.content[-1]
    assert asked.stop_reason == "tool_use" and use.type == "tool_use"
    assert use.name == "weather" and use.input == {"city": "Hanoi"}
    with client.messages.stream(model="bridged", max_tokens=50, tools=tools,
                                messages=[{"role": "user", "content": "again"}]) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[-1].input == {"city": "Hanoi"}  # type: ignore[union-attr]
    client.messages.create(model="bridged", max_tokens=50, tools=tools, messages=[
        {"role": "user", "content": "Hanoi weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": "weather",
                                           "input": {"city": "Hanoi"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "31°C"}]}])
    sent = routes_log.bodies("/v1/chat/completions")[-1]["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "weather",
                                                    "arguments": '{"city":"Hanoi"}'}
    assert sent[2] == {"role": "tool", "tool_call_id": use.id, "content": "31°C"}


def test_anthropic_errors_and_x_api_key(url: str) -> None:
    bad = anthropic.Anthropic(base_url=url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        bad.messages.create(model="full", max_tokens=5, messages=USER)
    assert refused.value.body == {"type": "error", "error": {
        "type": "authentication_error", "message": "Incorrect API key provided."}}
    client = anthropic.Anthropic(base_url=url, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=5, messages=USER)
    assert isinstance(missing.value.body, dict)
    assert missing.value.body["error"]["type"] == "not_found_error"
    no_max = httpx.post(url + "/v1/messages", headers={"x-api-key": MASTER_KEY},
                        json={"model": "full", "messages": USER})
    assert no_max.status_code == 400
    assert no_max.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in no_max.json()["error"]["message"]


def test_a_key_scoped_to_one_model_reaches_no_other_through_any_route(url: str) -> None:
    headers = key_with(url, AUTH, models=["chat-only"])
    bodies = {"/v1/completions": {"prompt": "a"}, "/v1/embeddings": {"input": "a"},
              "/v1/responses": {"input": "a"}, "/v1/rerank": {"query": "q", "documents": ["d"]},
              "/rerank": {"query": "q", "documents": ["d"]}, "/v1/score": {"text_1": "a",
                                                                           "text_2": "b"},
              "/tokenize": {"prompt": "a"}, "/detokenize": {"tokens": [1]},
              "/v1/messages": {"max_tokens": 5, "messages": USER}}
    for path, body in bodies.items():
        answer = httpx.post(url + path, headers=headers, json={"model": "full", **body})
        assert answer.status_code == 404, path
        text = answer.text
        assert "does not exist or you do not have access" in text and "full" not in \
            text.split("Available models:")[1], path
    # tokenize without a model goes to the one model this key sees (whose engine lacks it)
    alone = httpx.post(url + "/tokenize", headers=headers, json={"prompt": "a"})
    assert alone.status_code == 404 and alone.json()["error"]["code"] == "route_not_supported"
    assert "'chat-only'" in alone.json()["error"]["message"]


def test_a_budget_spent_through_one_route_refuses_the_others(url: str) -> None:
    headers = key_with(url, AUTH, max_total_tokens=30)
    client = openai.OpenAI(base_url=url + "/v1", max_retries=0,
                           api_key=headers["Authorization"].split()[1])
    client.responses.create(model="full", input="a")  # 25 tokens
    client.responses.create(model="full", input="b")  # 50: over
    refused = chat(url, headers, "full")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    other = key_with(url, AUTH, max_total_tokens=20)
    assert chat(url, other, "full").status_code == 200  # 14 tokens
    assert chat(url, other, "full").status_code == 200  # 28
    spent = openai.OpenAI(base_url=url + "/v1", max_retries=0,
                          api_key=other["Authorization"].split()[1])
    with pytest.raises(openai.RateLimitError):
        spent.responses.create(model="full", input="c")
    anthropic_client = anthropic.Anthropic(base_url=url, max_retries=0,
                                           api_key=other["Authorization"].split()[1])
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client.messages.create(model="full", max_tokens=5, messages=USER)


def test_upload_over_the_cap_is_413(settings: Settings, engine: tuple[str, RouteLog],
                                    tmp_path: Path) -> None:
    models = [{"name": "full", "upstreams": [{"url": engine[0], "served_name": "engine-full"}]}]
    with serve_app(create_app(settings, parse_config(
            {"models": models, "server": {"max_upload_bytes": 4096}}, "t"))) as url:
        big = httpx.post(url + "/v1/audio/transcriptions", headers=AUTH,
                         data={"model": "full"}, files={"file": ("a.wav", b"x" * 10_000)})
        assert big.status_code == 413
        not_form = httpx.post(url + "/v1/audio/transcriptions", headers=AUTH, json={"a": 1})
        assert not_form.status_code == 400


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/messages"])
def test_a_client_leaving_a_bridged_stream_cancels_the_engine_request(
        url: str, engine_log: EngineLog, path: str) -> None:
    rid = "leave-" + path.rsplit("/", 1)[1]
    body: dict[str, Any] = {"model": "chat-only-slow", "stream": True, "max_tokens": 500,
                            "input": "hi", "messages": USER}
    with httpx.stream("POST", url + path, timeout=30, json=body,
                      headers={**AUTH, "X-Request-ID": rid}) as answer:
        lines = answer.iter_lines()
        next(line for line in lines if line.startswith("data: ") and "delta" in line)
    deadline = time.monotonic() + 5  # the client has closed its connection here
    while rid not in engine_log.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine_log.cancelled == [rid] and engine_log.finished == []
    row = _usage_by_route(url)[path.rsplit("/", 1)[1]]
    assert row["estimated_requests"] == 1 and row["completion_tokens"] >= 1  # charged
