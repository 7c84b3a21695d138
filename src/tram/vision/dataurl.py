"""Base64 data URLs: the header pattern, decoding (in slices, for the image threads) and
building one; shared by images (`parts.py`, `decode.py`, `fetch.py`) and media (`media.py`)."""

from __future__ import annotations

import base64
import re
import time

__all__ = ["DATA_URL", "as_data_url", "b64decode"]

DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;base64,",
                      re.ASCII)

_SLICE = 1 << 20  # base64 characters decoded at a time (a multiple of 4)


def b64decode(encoded: str | memoryview) -> bytes:
    """base64.b64decode(validate=True), in slices for large inputs with the GIL given up
    between them: it runs in an image thread, and one 9 MB decode would otherwise hold the
    GIL, and so the event loop, for ~5 ms. Raises binascii.Error (a ValueError) if invalid."""
    if len(encoded) <= _SLICE:
        return base64.b64decode(encoded, validate=True)
    pieces = []
    for start in range(0, len(encoded), _SLICE):
        pieces.append(base64.b64decode(encoded[start:start + _SLICE], validate=True))
        time.sleep(0)  # lets a waiting thread (the event loop) take the GIL
    return b"".join(pieces)


def as_data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
