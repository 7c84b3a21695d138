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
        self._buffer = b""  # an unfinished event, its line ends already made LF
        self._after_cr = False  # the last chunk ended with CR: an LF next completes a CRLF

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        events = buffer.split(b"\n\n")
        self._buffer = events.pop()
        payloads = []
        for event in events:
            if event.startswith(b"data: ") and b"\n" not in event:
                payloads.append(event[6:])  # what engines send: one `data: ` line an event
            elif (payload := _data_of(event)) is not None:
                payloads.append(payload)
        return payloads


def _data_of(event: bytes) -> bytes | None:
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
