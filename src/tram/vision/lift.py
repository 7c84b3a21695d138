"""Large data URLs lifted out of a request body before its JSON is parsed.

Parsing a 9 MB body holds the GIL on the event loop for ~13 ms (orjson builds a 9 MB str),
and every text request arriving meanwhile waits (bench/RESULTS.md). Nearly all of such a body
is base64 inside a data URL, which the gateway decodes anyway, in its image threads. So before
parsing, each long JSON string value that starts with `data:` is cut out by byte search (as a
zero-copy view) and replaced by a placeholder unique to the request; the rest, small, is
parsed as usual. Placeholders where an image URL goes (`messages[i].content[j].image_url`) are
kept for the image pipeline, which decodes the view in a worker thread; any other one (a text
that happens to start with `data:`) is put back as it was, so the payload is exactly what the
client sent. A value holding a backslash (a JSON escape) is never lifted.
"""

from __future__ import annotations

import os
from typing import Any

from tram.errors import InvalidJSON

__all__ = ["LIFT_MIN_BYTES", "Lifted", "keep_image_urls", "lift_data_urls"]

LIFT_MIN_BYTES = 256 * 1024
_MARK = b'"data:'
_SPACE = b" \t\r\n"

# placeholder → the data URL's bytes (a view of the body; ASCII, as base64 data URLs are)
Lifted = dict[str, memoryview]


def _is_value(raw: bytes, quote: int) -> bool:
    """The string starting at `quote` is an object member's value (`"key": "…`)."""
    at = quote - 1
    while at >= 0 and raw[at] in _SPACE:
        at -= 1
    return at >= 0 and raw[at] == ord(":")


def lift_data_urls(raw: bytes, min_bytes: int = LIFT_MIN_BYTES) -> tuple[bytes, Lifted]:
    """The body with each data URL of `min_bytes` or more replaced by a placeholder string."""
    if len(raw) < min_bytes or _MARK not in raw:
        return raw, {}
    token = os.urandom(8).hex()
    view = memoryview(raw)
    pieces: list[bytes | memoryview] = []
    lifted: Lifted = {}
    copied = search = 0
    while (start := raw.find(_MARK, search)) != -1:
        end = raw.find(b'"', start + 1)
        if end == -1:
            break
        search = end + 1
        if end - start - 1 < min_bytes or not _is_value(raw, start) \
                or raw.find(b"\\", start + 1, end) != -1:
            continue
        name = f"tram-lifted:{token}:{len(lifted)}"
        pieces += [view[copied:start + 1], name.encode()]
        lifted[name] = view[start + 1:end]
        copied = end
    if not lifted:
        return raw, {}
    pieces.append(view[copied:])
    return b"".join(pieces), lifted


def keep_image_urls(payload: Any, lifted: Lifted) -> Lifted:
    """Put back every lifted value that is not an image part's URL; the ones that are."""
    if not lifted:
        return lifted
    images: Lifted = {}
    messages = payload.get("messages") if isinstance(payload, dict) else None
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            value = part.get("image_url")
            url = value.get("url") if isinstance(value, dict) else value
            if isinstance(url, str) and url in lifted:
                images[url] = lifted[url]
    rest = {name: view for name, view in lifted.items() if name not in images}
    if rest:
        _restore(payload, rest)
    return images


def _restore(value: Any, rest: Lifted) -> Any:
    if isinstance(value, str):
        view = rest.get(value)
        if view is None:
            return value
        try:
            return bytes(view).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJSON("The request body is not valid JSON: invalid UTF-8.") from None
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _restore(item, rest)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = _restore(item, rest)
    return value
