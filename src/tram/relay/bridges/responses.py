"""OpenAI's Responses API over chat completions: the request, the answer and the typed events.

Input items become chat messages (instructions as the system message, `input_text`/
`input_image` parts, `function_call` items as the assistant's tool calls, `function_call_output`
as tool messages; reasoning items are dropped as Qwen3's template drops them); the chat answer
becomes `output` items (reasoning, message with `output_text`, function calls); chat chunks
become `response.created` … `response.completed`, each numbered (`sequence_number`) and placed
(`output_index`, `content_index`) as the openai SDK's stream helpers expect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tram.errors import InvalidRequest, TramError
from tram.relay.bridges.common import ChatDelta, passthrough, read_chunk
from tram.relay.bridges.tools import SEPARATOR, ToolMap
from tram.relay.conversation import ResponsesTurn, new_id
from tram.relay.events import event_frame, failure_frame
from tram.relay.thinking import apply_thinking, requested_thinking
from tram.requestlog import RequestRecord

__all__ = ["ResponsesFromChat", "ToolMap", "chat_request", "response_from_chat"]


def chat_request(payload: dict[str, Any], tools: ToolMap) -> dict[str, Any]:
    """The chat payload for a (conversation-expanded) Responses request; `tools`, its tools
    as chat tools (`tool_map`)."""
    messages: list[dict[str, Any]] = []
    instructions = payload.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    for index, item in enumerate(payload.get("input") or ()):
        _add_item(messages, item, f"input[{index}]")
    # Reasoning with no turn after it has nothing to belong to.
    messages = [m for m in messages if not m.pop("_reasoning_only", False)]
    chat: dict[str, Any] = {"model": payload["model"], "messages": messages,
                            "stream": bool(payload.get("stream"))}
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    passthrough(payload, chat)
    if payload.get("max_output_tokens") is not None:
        chat["max_tokens"] = payload["max_output_tokens"]
    for name in ("user", "parallel_tool_calls"):
        if payload.get(name) is not None:
            chat[name] = payload[name]
    if tools.chat_tools:
        chat["tools"] = tools.chat_tools
    choice = payload.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif isinstance(choice, str):
        chat["tool_choice"] = choice
    text_format = (payload.get("text") or {}).get("format") if isinstance(
        payload.get("text"), dict) else None
    if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            key: text_format[key] for key in ("name", "schema", "strict", "description")
            if key in text_format}}
    elif isinstance(text_format, dict) and text_format.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    apply_thinking(chat, requested_thinking("responses", payload))
    return chat


def _add_item(messages: list[dict[str, Any]], item: Any, param: str) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest("Each input item must be an object.", param=param,
                             code="invalid_type")
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise InvalidRequest(f"Invalid role {role!r}.", param=f"{param}.role")
        content = item.get("content")
        if isinstance(content, list):
            content = [_part(part, f"{param}.content[{i}]") for i, part in enumerate(content)]
            if role != "user":  # only user messages take images: the rest as plain text
                content = "".join(part.get("text", "") for part in content)
        last = messages[-1] if messages else None
        if role == "assistant" and last is not None and last.get("_reasoning_only"):
            last.pop("_reasoning_only")  # the turn whose reasoning came just before
            last["content"] = content if content is not None else ""
            return
        messages.append({"role": "system" if role == "developer" else role,
                         "content": content if content is not None else ""})
    elif kind == "function_call":
        name = item.get("name")
        if isinstance(item.get("namespace"), str) and item["namespace"]:
            name = f"{item['namespace']}{SEPARATOR}{name}"  # as the model was offered it
        call = {"id": item.get("call_id") or item.get("id") or new_id("call"),
                "type": "function", "function": {"name": name,
                                                 "arguments": item.get("arguments", "")}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and not last.get("content"):
            last.pop("_reasoning_only", None)
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                         "content": output if isinstance(output, str) else
                         "".join(p.get("text", "") for p in output or () if isinstance(p, dict))})
    elif kind == "reasoning":
        # Its text (opened, if it came sealed) is the reasoning of the assistant turn that
        # follows, which Qwen3's template shows within the current question's tool calls.
        text = "".join(part.get("text", "") for part in item.get("content") or ()
                       if isinstance(part, dict))
        if text:
            messages.append({"role": "assistant", "content": None, "reasoning_content": text,
                             "_reasoning_only": True})
    else:
        raise InvalidRequest(f"Input items of type '{kind}' are not supported here.",
                             param=param, code="unsupported_input_item")


def _part(part: Any, param: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text", "refusal") and isinstance(part, dict):
        return {"type": "text", "text": part.get("text") or part.get("refusal") or ""}
    if kind == "input_image" and isinstance(part, dict):
        url = part.get("image_url")
        if not isinstance(url, str):
            raise InvalidRequest("Images are taken by URL or data URL (image_url); file ids "
                                 "are not supported here.", param=f"{param}.image_url")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise InvalidRequest(f"Content parts of type '{kind}' are not supported here.",
                         param=param, code="unsupported_content_part")


def _usage(record: RequestRecord) -> dict[str, Any]:
    prompt, completion = record.prompt_tokens or 0, record.completion_tokens or 0
    return {"input_tokens": prompt, "output_tokens": completion,
            "total_tokens": prompt + completion,
            "input_tokens_details": {"cached_tokens": record.cached_tokens or 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _skeleton(request: dict[str, Any], status: str) -> dict[str, Any]:
    """A response object's fields that echo the request."""
    text = request.get("text") if isinstance(request.get("text"), dict) else None
    return {
        "object": "response", "created_at": int(time.time()), "status": status,
        "error": None, "incomplete_details": None, "output": [], "usage": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "temperature": request.get("temperature"), "top_p": request.get("top_p"),
        "tools": request.get("tools") or [], "tool_choice": request.get("tool_choice", "auto"),
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "text": text or {"format": {"type": "text"}}, "reasoning": request.get("reasoning"),
        "metadata": request.get("metadata") or {}, "truncation": "disabled",
        "user": request.get("user"),
    }


def _message(text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": new_id("msg"), "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [],
                         "logprobs": []}]}


def _reasoning(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": new_id("rs"), "summary": [],
            "content": [{"type": "reasoning_text", "text": text}], "status": "completed"}


def _function_call(call_id: str, name: str, arguments: str,
                   tools: ToolMap) -> dict[str, Any]:
    item = {"type": "function_call", "id": new_id("fc"), "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}
    tools.annotate(item)  # a namespaced function's call names its namespace
    return item


def _ending(response: dict[str, Any], finish_reason: str | None) -> None:
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        response["status"] = "completed"


def response_from_chat(chat: dict[str, Any], turn: ResponsesTurn, record: RequestRecord,
                       tools: ToolMap) -> dict[str, Any]:
    """A chat completion (JSON) as a response object."""
    response = _skeleton(turn.request, "completed")
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if isinstance(message.get("reasoning"), str) and message["reasoning"]:
        output.append(_reasoning(message["reasoning"]))
    if isinstance(message.get("content"), str) and message["content"]:
        output.append(_message(message["content"]))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(_function_call(call.get("id") or new_id("call"),
                                     function.get("name", ""), function.get("arguments", ""),
                                     tools))
    response["output"] = output
    response["usage"] = _usage(record)
    _ending(response, choice.get("finish_reason"))
    turn.rewrite(response)
    return response


class ResponsesFromChat:
    """Chat chunks in, Responses events out (a StreamHandler)."""

    def __init__(self, turn: ResponsesTurn, record: RequestRecord, tools: ToolMap,
                 finished: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._turn = turn
        self._record = record
        self._tools = tools
        self._finished = finished  # applied to each item once it is complete
        self._response = _skeleton(turn.request, "in_progress")
        turn.rewrite(self._response)
        self._sequence = 0
        self._started = False
        self._open: dict[str, Any] | None = None  # the output item being streamed
        self._calls: dict[int, dict[str, Any]] = {}  # chat's tool-call index → its item
        self._finish_reason: str | None = None
        self._ended = False
        self.pending = False

    def _emit(self, frames: list[bytes], event: dict[str, Any]) -> None:
        event["sequence_number"] = self._sequence
        self._sequence += 1
        frames.append(event_frame(event))

    def event(self, payload: bytes) -> bytes | None:
        delta = read_chunk(payload, self._record)
        if delta is None:
            return None
        frames: list[bytes] = []
        if not self._started:
            self._started = True
            for kind in ("response.created", "response.in_progress"):
                self._emit(frames, {"type": kind, "response": dict(self._response)})
        self._step(frames, delta)
        return b"".join(frames) or None

    def _step(self, frames: list[bytes], delta: ChatDelta) -> None:
        if delta.reasoning:
            item = self._item(frames, "reasoning")
            item["content"][0]["text"] += delta.reasoning
            self._emit(frames, {"type": "response.reasoning_text.delta", "item_id": item["id"],
                                "output_index": item["_index"], "content_index": 0,
                                "delta": delta.reasoning})
        if delta.content:
            item = self._item(frames, "message")
            item["content"][0]["text"] += delta.content
            self._emit(frames, {"type": "response.output_text.delta", "item_id": item["id"],
                                "output_index": item["_index"], "content_index": 0,
                                "delta": delta.content, "logprobs": []})
        for call in delta.tool_calls:
            self._tool_piece(frames, call)
        if delta.finish_reason:
            self._finish_reason = delta.finish_reason

    def _tool_piece(self, frames: list[bytes], call: dict[str, Any]) -> None:
        index = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            self._close(frames)
            item = _function_call(call.get("id") or new_id("call"), function.get("name") or "",
                                  "", self._tools)
            item["status"] = "in_progress"
            self._calls[index] = item
            self._add(frames, item)
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            item["arguments"] += piece
            self._emit(frames, {"type": "response.function_call_arguments.delta",
                                "item_id": item["id"], "output_index": item["_index"],
                                "delta": piece})

    def _item(self, frames: list[bytes], kind: str) -> dict[str, Any]:
        """The open item of this kind, or a new one (closing the one before)."""
        if self._open is not None and self._open["type"] == kind:
            return self._open
        self._close(frames)
        item = _reasoning("") if kind == "reasoning" else _message("")
        item["status"] = "in_progress"
        self._add(frames, item)
        part = item["content"][0]
        self._emit(frames, {"type": "response.content_part.added", "item_id": item["id"],
                            "output_index": item["_index"], "content_index": 0,
                            "part": dict(part, text="")})
        return item

    def _add(self, frames: list[bytes], item: dict[str, Any]) -> None:
        item["_index"] = len(self._response["output"])
        self._response["output"].append(item)
        self._open = item
        self._emit(frames, {"type": "response.output_item.added",
                            "output_index": item["_index"], "item": _public(item)})

    def _close(self, frames: list[bytes]) -> None:
        item, self._open = self._open, None
        if item is None:
            return
        item["status"] = "completed"
        if self._finished is not None:
            self._finished(item)
        index = item["_index"]
        if item["type"] == "function_call":
            self._emit(frames, {"type": "response.function_call_arguments.done",
                                "item_id": item["id"], "output_index": index,
                                "arguments": item["arguments"]})
        else:
            part = item["content"][0]
            kind = "response.output_text.done" if item["type"] == "message" \
                else "response.reasoning_text.done"
            self._emit(frames, {"type": kind, "item_id": item["id"], "output_index": index,
                                "content_index": 0, "text": part["text"]})
            self._emit(frames, {"type": "response.content_part.done", "item_id": item["id"],
                                "output_index": index, "content_index": 0, "part": part})
        self._emit(frames, {"type": "response.output_item.done", "output_index": index,
                            "item": _public(item)})

    def done(self) -> None:
        self._ended = True

    def complete(self) -> bool:
        whole = self._ended or self._finish_reason is not None
        if whole and not self.pending and self._response["status"] == "in_progress":
            for item in self._response["output"]:
                if item["status"] != "completed":
                    item["status"] = "completed"
                    if self._finished is not None:
                        self._finished(item)
            self._response["output"] = [_public(item) for item in self._response["output"]]
            self._response["usage"] = _usage(self._record)
            _ending(self._response, self._finish_reason)
            self.pending = True  # stored before its event goes out
        return whole

    async def store_pending(self) -> None:
        if self.pending and self._response["status"] != "in_progress":
            await self._turn.finish(self._response)
        self.pending = False

    def end(self) -> bytes:
        frames: list[bytes] = []
        if not self._started:  # an engine that sent nothing but [DONE]
            self._started = True
            self._emit(frames, {"type": "response.created", "response": dict(self._response)})
        self._close(frames)
        kind = "response.incomplete" if self._response["status"] == "incomplete" \
            else "response.completed"
        self._emit(frames, {"type": kind, "response": self._response})
        return b"".join(frames)

    def failed(self, error: TramError) -> bytes:
        return failure_frame("responses", error, self._sequence)


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if not key.startswith("_")}
