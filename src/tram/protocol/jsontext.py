"""JSON text a client sent, parsed once and the same way wherever it comes from (a request
body, a line of a batch's input file): valid JSON, nested no deeper than the gateway can write
back out."""

from __future__ import annotations

from typing import Any

import orjson

from tram.errors import InvalidJSON

__all__ = ["MAX_DEPTH", "parse_json"]

# orjson reads JSON nested up to 1024 levels but writes only up to 254: a body nested deeper
# would parse, then fail wherever the gateway writes it again (to the engine, to the store).
MAX_DEPTH = 128


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise InvalidJSON("The request body is empty; send a JSON object.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc.msg} (at char {exc.pos}).") \
            from None
    # Counted only when the body could be that deep at all (two C-speed scans of the bytes).
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise InvalidJSON(f"The request body is nested more than {MAX_DEPTH} levels deep.")
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, dict | list))
    return deepest
