"""The engine's SSE bytes split into events however the reads cut them."""

from __future__ import annotations

import pytest

from tram.relay.sse import SSEDecoder

EVENTS = [b'{"a":1}', b'{"b":"x\\ny"}', b"line one\nline two", b"[DONE]"]


def _stream(newline: bytes) -> bytes:
    """The events with `newline` line ends, a comment, a field other than data, and data
    lines with and without the optional space."""
    body = (b": keep-alive" + newline * 2
            + b"data: " + EVENTS[0] + newline * 2
            + b"event: delta" + newline + b"data:" + EVENTS[1] + newline * 2
            + b"data: line one" + newline + b"data: line two" + newline * 2
            + b"data: " + EVENTS[3] + newline * 2)
    return body


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_cut_of_the_stream_gives_the_same_events(newline: bytes) -> None:
    raw = _stream(newline)
    for cut in range(len(raw) + 1):
        for second_cut in (cut, min(cut + 1, len(raw)), min(cut + 7, len(raw))):
            decoder = SSEDecoder()
            events = [*decoder.feed(raw[:cut]), *decoder.feed(raw[cut:second_cut]),
                      *decoder.feed(raw[second_cut:])]
            assert events == EVENTS, (newline, cut, second_cut)


def test_byte_by_byte() -> None:
    for newline in (b"\n", b"\r\n", b"\r"):
        decoder = SSEDecoder()
        raw = _stream(newline)
        assert [e for i in range(len(raw)) for e in decoder.feed(raw[i:i + 1])] == EVENTS
