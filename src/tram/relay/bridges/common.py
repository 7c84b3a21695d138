"""What both bridges share: passing sampling options through, and reading chat chunks."""

from __future__ import annotations

from typing import Any

import orjson

from tram.meter import is_generated
from tram.relay.stream import mirror_reasoning
from tram.requestlog import RequestRecord

__all__ = ["ChatDelta", "json_arguments", "passthrough", "read_chunk"]

# vLLM's and llama.cpp's sampling extras, and the conversation's cache key (OpenAI's chat takes
# it too; the gateway routes by it): kept when a bridged request carries them.
_EXTRAS = ("top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty",
           "seed", "chat_template_kwargs", "temperature", "top_p", "prompt_cache_key")


def passthrough(source: dict[str, Any], chat: dict[str, Any]) -> None:
    for name in _EXTRAS:
        if name in source and source[name] is not None:
            chat[name] = source[name]


def json_arguments(arguments: Any) -> Any:
    """A tool call's arguments (a JSON string in chat) as a JSON value; text that is not JSON
    is kept as a string rather than lost."""
    if not isinstance(arguments, str):
        return arguments if arguments is not None else {}
    try:
        return orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        return arguments


class ChatDelta:
    """One chat chunk's first choice, read once: reasoning, text, tool-call pieces, the end."""

    __slots__ = ("content", "finish_reason", "reasoning", "tool_calls")

    def __init__(self) -> None:
        self.reasoning: str | None = None
        self.content: str | None = None
        self.tool_calls: list[dict[str, Any]] = []
        self.finish_reason: str | None = None


def read_chunk(payload: bytes, record: RequestRecord) -> ChatDelta | None:
    """A chat chunk's delta, its usage taken into the record; None if not a chunk."""
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(chunk, dict):
        return None
    choices = chunk.get("choices")
    if chunk.get("usage"):
        record.meter.engine_usage(chunk["usage"], final=not choices)
    if "error" in chunk:
        record.error_code = "engine_stream_error"
    read = ChatDelta()
    for choice in choices or ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        read.finish_reason = choice.get("finish_reason") or None
        delta = choice.get("delta")
        if isinstance(delta, dict):
            mirror_reasoning(delta)
            if is_generated(delta):
                record.meter.relayed()
            reasoning, content = delta.get("reasoning"), delta.get("content")
            read.reasoning = reasoning if isinstance(reasoning, str) and reasoning else None
            read.content = content if isinstance(content, str) and content else None
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                read.tool_calls = [call for call in calls if isinstance(call, dict)]
    return read
