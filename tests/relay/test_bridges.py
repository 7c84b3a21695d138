"""The chat bridges on their own (the route tests run them end to end): the Responses bridge's
tools (a namespace's functions flattened and their calls named back, built-in tools ignored or
refused, earlier calls sent back under the name the model was offered), its answers and events;
the Messages bridge's system messages, tool use and results, and its events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tram.config import ResponsesConfig
from tram.errors import InvalidRequest
from tram.protocol.routes import ResponsesRequest
from tram.relay.bridges import messages as messages_bridge
from tram.relay.bridges import responses as responses_bridge
from tram.relay.bridges.tools import tool_map
from tram.relay.conversation import ResponsesTurn
from tram.requestlog import RequestRecord

WEATHER = {"type": "function", "name": "get_weather", "description": "w",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
CODEX_TOOLS = [
    {"type": "function", "name": "shell", "parameters": {"type": "object"}},
    {"type": "namespace", "name": "mcp__weather", "description": "MCP",
     "tools": [WEATHER]},
    {"type": "web_search"},
]


def _turn(payload: dict[str, Any]) -> ResponsesTurn:
    """A turn that is not stored (`store: false`): the bridge alone is under test."""
    payload = {**payload, "store": False}
    return ResponsesTurn(None, ResponsesConfig(), "key", "qwen-text",  # type: ignore[arg-type]
                         ResponsesRequest.model_validate(payload), payload)


def _record() -> RequestRecord:
    return RequestRecord("r", "POST", "/v1/responses")


def test_namespaced_functions_are_flattened_and_built_ins_ignored() -> None:
    tools = tool_map(CODEX_TOOLS)
    names = [tool["function"]["name"] for tool in tools.chat_tools]
    assert names == ["shell", "mcp__weather__get_weather"]
    assert tools.ignored == ["web_search"]
    assert tools.call("mcp__weather__get_weather") == ("get_weather", "mcp__weather")
    assert tools.call("get_weather") == ("get_weather", "mcp__weather")  # called bare
    assert tools.call("shell") == ("shell", None)
    with pytest.raises(InvalidRequest) as refused:
        tool_map(CODEX_TOOLS, "refuse")
    assert refused.value.param == "tools[2]" and refused.value.code == "unsupported_tool"


def test_a_bare_name_shadowed_by_a_top_level_function_gets_no_namespace() -> None:
    tools = tool_map([{**WEATHER}, {"type": "namespace", "name": "ns", "tools": [WEATHER]}])
    assert tools.call("get_weather") == ("get_weather", None)
    assert tools.call("ns__get_weather") == ("get_weather", "ns")


def test_the_chat_request_offers_flat_names_and_takes_earlier_calls_back() -> None:
    payload = {"model": "m", "tools": CODEX_TOOLS, "input": [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "namespace": "mcp__weather", "arguments": '{"city": "Hanoi"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "31 C"}]}
    chat = responses_bridge.chat_request(payload, tool_map(payload["tools"]))
    assert [t["function"]["name"] for t in chat["tools"]] == ["shell",
                                                              "mcp__weather__get_weather"]
    call = chat["messages"][1]["tool_calls"][0]
    assert call["function"]["name"] == "mcp__weather__get_weather"
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "31 C"}


def test_a_namespaced_call_comes_back_with_its_namespace() -> None:
    payload = {"model": "m", "input": "weather?", "tools": CODEX_TOOLS}
    chat_answer = {"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {
                "name": "mcp__weather__get_weather", "arguments": '{"city": "Hanoi"}'}}]}}]}
    response = responses_bridge.response_from_chat(chat_answer, _turn(payload), _record(),
                                                   tool_map(CODEX_TOOLS))
    call = response["output"][0]
    assert (call["type"], call["name"], call["namespace"]) == \
        ("function_call", "get_weather", "mcp__weather")


def _events(frames: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in frames.split(b"\n") if line.startswith(b"data: ")]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_the_stream_names_the_namespace_of_a_call() -> None:
    payload = {"model": "m", "input": "weather?", "tools": CODEX_TOOLS, "stream": True}
    stream = responses_bridge.ResponsesFromChat(_turn(payload), _record(), tool_map(CODEX_TOOLS))
    frames = stream.event(_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {
        "name": "get_weather", "arguments": '{"city"'}}]}))
    frames = (frames or b"") + (stream.event(_chunk({"tool_calls": [{"index": 0, "function": {
        "arguments": ': "Hanoi"}'}}]}, "tool_calls")) or b"")
    assert stream.complete()
    events = _events(frames + stream.end())
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["namespace"] == "mcp__weather" and added["item"]["name"] == "get_weather"
    done = events[-1]["response"]["output"][0]
    assert done["arguments"] == '{"city": "Hanoi"}' and done["namespace"] == "mcp__weather"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_messages_keeps_a_mid_conversation_system_message_in_its_place() -> None:
    chat = messages_bridge.chat_request({"model": "m", "max_tokens": 8, "system": "first",
                                         "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "tools changed"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                           "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": "done"}]}]})
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "system", "assistant", "tool"]
    assert chat["messages"][2]["content"] == "tools changed"
    assert orjson.loads(chat["messages"][3]["tool_calls"][0]["function"]["arguments"]) == {"a": 1}


def test_messages_events_carry_thinking_then_tool_use() -> None:
    stream = messages_bridge.MessagesFromChat("qwen", _record())
    frames = b"".join(filter(None, [
        stream.event(_chunk({"reasoning": "plan"})),
        stream.event(_chunk({"tool_calls": [{"index": 0, "id": "t1", "function": {
            "name": "get_weather", "arguments": '{"city": "Hanoi"}'}}]}, "tool_calls"))]))
    assert stream.complete()
    events = _events(frames + stream.end())
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    blocks = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert blocks == ["thinking", "tool_use"]
    stop = next(e for e in events if e["type"] == "message_delta")
    assert stop["delta"]["stop_reason"] == "tool_use"
