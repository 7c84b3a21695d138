"""Reading a JSON request body straight from ASGI `receive`, with a size limit checked
before (Content-Length) and while reading (chunked bodies); `parse_json` is
`protocol/jsontext.py`'s (batch lines are parsed by it too)."""

from __future__ import annotations

from typing import Any

from tram.errors import RequestTooLarge
from tram.protocol.jsontext import parse_json
from tram.types import Receive, Scope

__all__ = ["ClientGone", "content_length", "parse_json", "read_body", "read_json"]


class ClientGone(Exception):
    """The client disconnected before its body was read; nobody is left to answer."""


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than the {limit} bytes allowed.")


async def read_json(scope: Scope, receive: Receive, limit: int) -> Any:
    return parse_json(await read_body(scope, receive, limit))


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = content_length(scope)
    if declared is not None and declared > limit:
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
