"""Typed server-sent events (`event: <type>` + JSON data): the Responses API's and Anthropic
Messages', relayed from an engine that serves them natively or made by a chat bridge.

Both end on a terminal event of their own (`response.completed`/`incomplete`/`failed`,
`message_stop`), not `data: [DONE]`; a stream that fails midway ends with an `error` event in
the route's own shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import orjson

from tram.errors import TramError, anthropic_error_body
from tram.requestlog import RequestRecord

__all__ = ["Dialect", "EventStream", "event_frame", "failure_frame"]

Dialect = Literal["responses", "anthropic"]

_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_RESPONSE_DELTAS = frozenset({"response.output_text.delta", "response.reasoning_text.delta",
                              "response.reasoning_summary_text.delta",
                              "response.function_call_arguments.delta"})


def event_frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event.get("type", "message")).encode() + b"\ndata: " \
        + orjson.dumps(event) + b"\n\n"


def failure_frame(dialect: Dialect, error: TramError, sequence_number: int) -> bytes:
    """The error event a failed stream ends with, in the route's shape."""
    if dialect == "anthropic":
        return b"event: error\ndata: " + anthropic_error_body(error) + b"\n\n"
    return event_frame({"type": "error", "code": error.code, "message": error.message,
                        "param": error.param, "sequence_number": sequence_number})


class EventStream:
    """An engine's own typed events, relayed one by one: the model alias put back, usage and
    generated deltas counted, and (Responses) each event numbered if the engine did not;
    `finish` sees the final response object (to store it) before its event goes out."""

    def __init__(self, dialect: Dialect, alias: str, record: RequestRecord,
                 rewrite: Callable[[dict[str, Any]], None] | None = None,
                 finish: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                 items: Callable[[Any], None] | None = None) -> None:
        self._dialect = dialect
        self._items_hook = items
        self._alias = alias
        self._record = record
        self._rewrite = rewrite
        self._finish = finish
        self._final: dict[str, Any] | None = None
        self._ended = False
        self._sequence = 0
        self._items: dict[Any, int] = {}  # item id → output_index, for engines that omit it
        self.pending = False

    def event(self, payload: bytes) -> bytes | None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return b"data: " + payload + b"\n\n"  # not ours to judge
        if not isinstance(event, dict):
            return b"data: " + payload + b"\n\n"
        kind = event.get("type")
        if kind == "error":
            self._record.error_code = "engine_stream_error"
        if self._dialect == "responses":
            self._responses_event(event, kind)
        else:
            self._anthropic_event(event, kind)
        return event_frame(event)

    def _responses_event(self, event: dict[str, Any], kind: Any) -> None:
        event.setdefault("sequence_number", self._sequence)
        self._sequence += 1
        if self._items_hook is not None:
            self._items_hook(event.get("item"))
            response = event.get("response")
            for item in response.get("output") or () if isinstance(response, dict) else ():
                self._items_hook(item)
        if "output_index" not in event:
            self._place(event, kind)
        response = event.get("response")
        if isinstance(response, dict):
            if "model" in response:
                response["model"] = self._alias
            if self._rewrite is not None:
                self._rewrite(response)
            if kind in _RESPONSE_ENDS:
                self._ended = True
                self._record.meter.engine_usage(response.get("usage"))
                if self._finish is not None:
                    self._final = response
                    self.pending = True
        elif kind in _RESPONSE_DELTAS:
            self._record.meter.relayed()

    def _place(self, event: dict[str, Any], kind: Any) -> None:
        """Fill in what an engine left out (llama.cpp's events name the item only) and the
        openai SDK's stream helpers index by: output_index, and content_index (one part per
        item, as these engines write)."""
        item = event.get("item")
        if kind == "response.output_item.added" and isinstance(item, dict):
            event["output_index"] = self._items.setdefault(item.get("id"), len(self._items))
        elif isinstance(item, dict):
            event["output_index"] = self._items.get(item.get("id"), 0)
        elif "item_id" in event:
            event["output_index"] = self._items.get(event["item_id"], 0)
            if isinstance(kind, str) and ("content_part" in kind or "_text." in kind):
                event.setdefault("content_index", 0)

    def _anthropic_event(self, event: dict[str, Any], kind: Any) -> None:
        if kind == "content_block_delta":
            self._record.meter.relayed()
        elif kind == "message_start" and isinstance(message := event.get("message"), dict):
            if "model" in message:
                message["model"] = self._alias
            self._record.meter.engine_usage(message.get("usage"), final=False)
        elif kind == "message_delta":
            self._record.meter.engine_usage(event.get("usage"))
        elif kind == "message_stop":
            self._ended = True

    def done(self) -> None:
        return None

    def complete(self) -> bool:
        return self._ended

    def end(self) -> bytes:
        return b""

    def failed(self, error: TramError) -> bytes:
        return failure_frame(self._dialect, error, self._sequence)

    async def store_pending(self) -> None:
        self.pending = False
        final, self._final = self._final, None
        if final is not None and self._finish is not None:
            await self._finish(final)
