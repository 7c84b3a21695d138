"""Reading what a coding agent and the gateway said to each other, in each protocol: OpenAI
Responses (Codex), Anthropic Messages (Claude Code), OpenAI chat completions (Qwen Code)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.recording_proxy import Exchange

__all__ = ["events", "finished", "protocol_problems", "stream_usage", "tool_calls",
           "tool_results"]


def events(exchange: Exchange) -> list[dict[str, Any]]:
    """The JSON events of a streamed answer (`data: …` lines; `[DONE]` left out)."""
    out = []
    for line in exchange.answer.decode(errors="replace").splitlines():
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            try:
                out.append(json.loads(line[5:]))
            except ValueError:
                out.append({"type": "unparsable", "line": line[:200]})
    return out


def _route(exchange: Exchange) -> str:
    path = exchange.path.split("?")[0]
    return "responses" if path.endswith("/responses") else \
        "messages" if path.endswith("/messages") else "chat"


def finished(exchange: Exchange) -> str | None:
    """How a streamed answer ended in its protocol's own terms, or None if it did not."""
    got = events(exchange)
    route = _route(exchange)
    if route == "responses":
        last = got[-1] if got else {}
        if last.get("type") in ("response.completed", "response.incomplete"):
            response = last.get("response") or {}
            reason = (response.get("incomplete_details") or {}).get("reason")
            return f"{response.get('status')}" + (f" ({reason})" if reason else "")
        return None
    if route == "messages":
        stops = [e for e in got if e.get("type") == "message_delta"]
        if got and got[-1].get("type") == "message_stop" and stops:
            return str(stops[-1].get("delta", {}).get("stop_reason"))
        return None
    reasons = [c.get("finish_reason") for e in got for c in e.get("choices") or ()
               if c.get("finish_reason")]
    done = exchange.answer.rstrip().endswith(b"data: [DONE]")
    return str(reasons[-1]) if reasons and done else None


def protocol_problems(exchange: Exchange) -> list[str]:
    """What a client could not take from this exchange: an error status, an error event, an
    event that is not JSON, a stream that did not end in its protocol's own terms."""
    problems = []
    if exchange.status != 200:
        problems.append(f"HTTP {exchange.status}: {exchange.error()}")
    for event in events(exchange):
        if event.get("type") in ("error", "response.failed", "unparsable") or "error" in event:
            problems.append(f"event {json.dumps(event)[:300]}")
    if exchange.status == 200 and finished(exchange) is None:
        problems.append("the stream did not end with its protocol's last event")
    return problems


def tool_calls(exchange: Exchange) -> list[tuple[str, str]]:
    """(call id, tool name) of each tool call in a streamed answer."""
    calls = []
    for event in events(exchange):
        kind = event.get("type")
        if kind == "response.output_item.done" and event["item"].get("type") == "function_call":
            calls.append((event["item"]["call_id"], event["item"]["name"]))
        elif kind == "content_block_start" and event["content_block"].get("type") == "tool_use":
            calls.append((event["content_block"]["id"], event["content_block"]["name"]))
        for choice in event.get("choices") or ():
            for call in (choice.get("delta") or {}).get("tool_calls") or ():
                if call.get("id"):
                    calls.append((call["id"], (call.get("function") or {}).get("name", "")))
    return calls


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(part.get("text", part.get("content", "")))
                       for part in content if isinstance(part, dict))
    return ""


def tool_results(body: Any) -> dict[str, str]:
    """call id → the tool result text a request carries back to the model."""
    if not isinstance(body, dict):
        return {}
    found: dict[str, str] = {}
    for item in body.get("input") or ():  # Responses
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            found[item["call_id"]] = _text(item.get("output"))
    for message in body.get("messages") or ():
        if message.get("role") == "tool":  # chat completions
            found[message.get("tool_call_id", "")] = _text(message.get("content"))
        for block in message.get("content") if isinstance(message.get("content"), list) else ():
            if isinstance(block, dict) and block.get("type") == "tool_result":  # Messages
                found[block["tool_use_id"]] = _text(block.get("content"))
    return found


def _anthropic_input(usage: dict[str, Any]) -> int:
    """Anthropic's input is three counts: tokens read from the prompt cache and written to it
    are not in `input_tokens` (the gateway's usage row counts the whole prompt)."""
    return sum(int(usage.get(name) or 0) for name in
               ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))


def stream_usage(exchange: Exchange) -> tuple[int, int] | None:
    """(prompt, completion) tokens as the answer itself reported them to the client: the
    Responses `response.completed` usage, Messages' message_start input and message_delta
    output (llama-server says the input at the start only; cached input apart), chat's usage
    chunk."""
    started, last = 0, None
    for event in events(exchange):
        kind = event.get("type")
        if kind in ("response.completed", "response.incomplete"):
            usage = (event.get("response") or {}).get("usage") or {}
            if usage:
                return int(usage["input_tokens"]), int(usage["output_tokens"])
        elif kind == "message_start":
            started = _anthropic_input((event.get("message") or {}).get("usage") or {})
        elif kind == "message_delta" and event.get("usage"):
            usage = event["usage"]
            return _anthropic_input(usage) or started, int(usage.get("output_tokens") or 0)
        elif event.get("usage") and "choices" in event:  # the last chunk's is the total
            last = int(event["usage"]["prompt_tokens"]), int(event["usage"]["completion_tokens"])
    return last
