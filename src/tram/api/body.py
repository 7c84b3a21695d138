"""Reading a JSON request body with a size limit (checked before and while reading)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from tram.errors import InvalidJSON, RequestTooLarge

__all__ = ["read_json"]


class ClientGone(Exception):
    """The client disconnected before its body was read; nobody is left to answer."""


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than the {limit} bytes allowed.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"The request body is larger than the {limit} bytes allowed.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidJSON("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc.msg} (at char {exc.pos}).") \
            from None
