"""Qwen3's thinking switch, read from each route's own field and applied as the engine reads
it: `chat_template_kwargs.enable_thinking` (vLLM's reasoning parser needs it set: a template
default alone makes it return the whole answer as reasoning).

A request chooses with chat_template_kwargs.enable_thinking on any route, or with its route's
own field: Responses `reasoning.effort` ("none" and "minimal" are off, any other effort on),
Anthropic Messages `thinking.type` ("enabled" / "disabled"). A request that does not choose
gets its model's `thinking` default from tram.yaml, on every generating route, native or
bridged alike. Completions take a raw prompt: no template, so nothing to switch (the prompt
itself says whether the model thinks).
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply_thinking", "requested_thinking"]

_OFF_EFFORTS = ("none", "minimal")


def requested_thinking(route: str, payload: dict[str, Any]) -> bool | None:
    """What the request itself asks for, or None when it does not say."""
    kwargs = payload.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and isinstance(kwargs.get("enable_thinking"), bool):
        return bool(kwargs["enable_thinking"])
    if route == "responses":
        reasoning = payload.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        if isinstance(effort, str):
            return bool(effort not in _OFF_EFFORTS)
    elif route == "messages":
        thinking = payload.get("thinking")
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind in ("enabled", "disabled"):
            return bool(kind == "enabled")
    return None


def apply_thinking(payload: dict[str, Any], enabled: bool | None) -> None:
    """Set chat_template_kwargs.enable_thinking unless it is set (None: leave it to the engine)."""
    if enabled is None:
        return
    kwargs = payload.get("chat_template_kwargs")
    if kwargs is None:
        payload["chat_template_kwargs"] = {"enable_thinking": enabled}
    elif isinstance(kwargs, dict) and "enable_thinking" not in kwargs:
        kwargs["enable_thinking"] = enabled
