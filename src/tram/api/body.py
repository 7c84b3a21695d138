"""Reading a JSON request body straight from ASGI `receive`, with a size limit checked
before (Content-Length) and while reading (chunked bodies)."""

from __future__ import annotations

from typing import Any

import orjson

from tram.errors import InvalidJSON, RequestTooLarge
from tram.types import Receive, Scope

__all__ = ["ClientGone", "parse_json", "read_body", "read_json"]


class ClientGone(Exception):
    """The client disconnected before its body was read; nobody is left to answer."""


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than the {limit} bytes allowed.")


async def read_json(scope: Scope, receive: Receive, limit: int) -> Any:
    return parse_json(await read_body(scope, receive, limit))


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise InvalidJSON("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc.msg} (at char {exc.pos}).") \
            from None
