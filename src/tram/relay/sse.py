"""Server-sent events: split the engine's byte stream into events, and encode frames.

The decoder works on bytes (no text decoding of the whole stream) and accepts LF, CRLF and CR
line ends as the SSE specification does.
"""

from __future__ import annotations

from tram.errors import TramError, error_body

__all__ = ["DONE", "SSEDecoder", "done_frame", "error_frame"]

DONE = b"[DONE]"


class SSEDecoder:
    """Feed bytes, get back the `data` payload of each complete event (comments dropped)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        if b"\r" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        return [payload for event in events if (payload := _data_of(event)) is not None]


def _data_of(event: bytes) -> bytes | None:
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # what engines send: one `data: ` line per event
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(data) if data else None


def data_frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def error_frame(error: TramError) -> bytes:
    return data_frame(error_body(error))


def done_frame() -> bytes:
    return data_frame(DONE)
