"""Anthropic's Messages API over chat completions: the request, the answer and the events.

`system` becomes the system message; content blocks become chat parts (text, images from base64
or a URL), `tool_use` blocks the assistant's tool calls and `tool_result` blocks tool messages;
`thinking: {type: enabled}` turns Qwen3's thinking on. The chat answer becomes content blocks
(thinking, text, tool_use) with Anthropic's stop reasons and usage; chat chunks become
`message_start`, `content_block_*`, `message_delta` and `message_stop`.
"""

from __future__ import annotations

from typing import Any

import orjson

from tram.errors import InvalidRequest, TramError
from tram.relay.bridges.common import ChatDelta, json_arguments, passthrough, read_chunk
from tram.relay.conversation import new_id
from tram.relay.events import event_frame, failure_frame
from tram.relay.thinking import apply_thinking, requested_thinking
from tram.requestlog import RequestRecord

__all__ = ["MessagesFromChat", "chat_request", "message_from_chat"]

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                 "function_call": "tool_use", "content_filter": "refusal"}


def chat_request(payload: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = payload.get("system")
    if isinstance(system, list):
        system = "".join(block.get("text", "") for block in system if isinstance(block, dict))
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(payload["messages"]):
        _add_message(messages, message, f"messages[{index}]")
    chat: dict[str, Any] = {"model": payload["model"], "messages": messages,
                            "max_tokens": payload["max_tokens"],
                            "stream": bool(payload.get("stream"))}
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    passthrough(payload, chat)
    if payload.get("stop_sequences"):
        chat["stop"] = payload["stop_sequences"]
    user = (payload.get("metadata") or {}).get("user_id") if isinstance(
        payload.get("metadata"), dict) else None
    if isinstance(user, str):
        chat["user"] = user
    tools = payload.get("tools")
    if tools:
        chat["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = payload.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in ("auto", "none"):
            chat["tool_choice"] = kind
        elif kind == "any":
            chat["tool_choice"] = "required"
        if choice.get("disable_parallel_tool_use"):
            chat["parallel_tool_calls"] = False
    apply_thinking(chat, requested_thinking("messages", payload))
    return chat


def _tool(tool: Any, param: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or "input_schema" not in tool:
        kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
        raise InvalidRequest(f"Tools of type '{kind}' are not supported here; only custom "
                             "tools (name, input_schema) are.", param=param)
    function = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _add_message(messages: list[dict[str, Any]], message: Any, param: str) -> None:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant",
                                                                   "system"):
        raise InvalidRequest("Each message needs a role of 'user', 'assistant' or 'system'.",
                             param=f"{param}.role")
    role, content = message["role"], message.get("content")
    if role == "system":  # a mid-conversation system message (Claude Code sends them)
        text = content if isinstance(content, str) else "".join(
            block.get("text", "") for block in content or () if isinstance(block, dict))
        messages.append({"role": "system", "content": text})
        return
    if isinstance(content, str):
        messages.append({"role": role, "content": content})
        return
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of blocks.",
                             param=f"{param}.content", code="invalid_type")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        where = f"{param}.content[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block, dict):
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image" and isinstance(block, dict):
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, where)}})
        elif kind == "tool_use" and isinstance(block, dict):
            calls.append({"id": block.get("id") or new_id("toolu"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": orjson.dumps(block.get("input", {})
                                                                 ).decode()}})
        elif kind == "tool_result" and isinstance(block, dict):
            messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                             "content": _result_text(block.get("content"))})
        elif kind not in ("thinking", "redacted_thinking"):
            raise InvalidRequest(f"Content blocks of type '{kind}' are not supported here.",
                                 param=where, code="unsupported_content_part")
    if role == "assistant":
        text = "".join(part.get("text", "") for part in parts)
        if text or calls:
            entry: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                entry["tool_calls"] = calls
            messages.append(entry)
    elif parts:
        messages.append({"role": "user", "content": parts})


def _image_url(block: dict[str, Any], param: str) -> str:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if isinstance(source, dict) and source.get("type") == "url":
        return str(source.get("url"))
    raise InvalidRequest("Images are taken as base64 or url sources.", param=f"{param}.source")


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or ()
                   if isinstance(block, dict))


def _usage(record: RequestRecord) -> dict[str, Any]:
    return {"input_tokens": record.prompt_tokens or 0,
            "output_tokens": record.completion_tokens or 0}


def message_from_chat(chat: dict[str, Any], alias: str, record: RequestRecord) -> dict[str, Any]:
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if isinstance(message.get("reasoning"), str) and message["reasoning"]:
        content.append({"type": "thinking", "thinking": message["reasoning"], "signature": ""})
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or new_id("toolu"),
                        "name": function.get("name", ""),
                        "input": json_arguments(function.get("arguments"))})
    return {"id": new_id("msg"), "type": "message", "role": "assistant", "model": alias,
            "content": content,
            "stop_reason": _STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None, "usage": _usage(record)}


class MessagesFromChat:
    """Chat chunks in, Anthropic events out (a StreamHandler)."""

    pending = False

    def __init__(self, alias: str, record: RequestRecord) -> None:
        self._alias = alias
        self._record = record
        self._started = False
        self._block = -1  # index of the open content block
        self._open: str | None = None  # its kind: thinking, text, or tool_use:<chat index>
        self._finish_reason: str | None = None
        self._ended = False

    def event(self, payload: bytes) -> bytes | None:
        delta = read_chunk(payload, self._record)
        if delta is None:
            return None
        frames: list[bytes] = []
        self._start(frames)
        self._step(frames, delta)
        return b"".join(frames) or None

    def _start(self, frames: list[bytes]) -> None:
        if not self._started:
            self._started = True
            frames.append(event_frame({"type": "message_start", "message": {
                "id": new_id("msg"), "type": "message", "role": "assistant",
                "model": self._alias, "content": [], "stop_reason": None,
                "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}))

    def _step(self, frames: list[bytes], delta: ChatDelta) -> None:
        if delta.reasoning:
            self._block_for(frames, "thinking", {"type": "thinking", "thinking": "",
                                                 "signature": ""})
            self._delta(frames, {"type": "thinking_delta", "thinking": delta.reasoning})
        if delta.content:
            self._block_for(frames, "text", {"type": "text", "text": ""})
            self._delta(frames, {"type": "text_delta", "text": delta.content})
        for call in delta.tool_calls:
            function = call.get("function") or {}
            self._block_for(frames, f"tool_use:{call.get('index', 0)}", {
                "type": "tool_use", "id": call.get("id") or new_id("toolu"),
                "name": function.get("name") or "", "input": {}})
            if isinstance(function.get("arguments"), str) and function["arguments"]:
                self._delta(frames, {"type": "input_json_delta",
                                     "partial_json": function["arguments"]})
        if delta.finish_reason:
            self._finish_reason = delta.finish_reason

    def _block_for(self, frames: list[bytes], kind: str, block: dict[str, Any]) -> None:
        if self._open == kind:
            return
        self._stop_block(frames)
        self._block += 1
        self._open = kind
        frames.append(event_frame({"type": "content_block_start", "index": self._block,
                                   "content_block": block}))

    def _delta(self, frames: list[bytes], delta: dict[str, Any]) -> None:
        frames.append(event_frame({"type": "content_block_delta", "index": self._block,
                                   "delta": delta}))

    def _stop_block(self, frames: list[bytes]) -> None:
        if self._open is not None:
            frames.append(event_frame({"type": "content_block_stop", "index": self._block}))
            self._open = None

    def done(self) -> None:
        self._ended = True

    def complete(self) -> bool:
        return self._ended or self._finish_reason is not None

    async def store_pending(self) -> None:
        return None

    def end(self) -> bytes:
        frames: list[bytes] = []
        self._start(frames)
        self._stop_block(frames)
        frames.append(event_frame({"type": "message_delta", "delta": {
            "stop_reason": _STOP_REASONS.get(self._finish_reason or "stop", "end_turn"),
            "stop_sequence": None}, "usage": _usage(self._record)}))
        frames.append(event_frame({"type": "message_stop"}))
        return b"".join(frames)

    def failed(self, error: TramError) -> bytes:
        return failure_frame("anthropic", error, 0)
