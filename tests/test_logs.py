"""Access lines: the same line through the direct path as through logging, written once per
turn of the event loop, and still seen by a log capture added later."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Iterator

import orjson
import pytest

from tram.logs import ACCESS, TextFormatter, setup_logging
from tram.requestlog import RequestRecord, log_request


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[_CountingStream]:
    """A stream for stderr (each test points sys.stderr at it in its own body: pytest's
    capture puts its own back after a fixture's set-up); the logging set-up restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, ACCESS.handler, ACCESS.text, logging._srcfile
    yield _CountingStream()
    root.handlers[:], level, ACCESS.handler, ACCESS.text, logging._srcfile = saved
    root.setLevel(level)


def _record(request_id: str = "r-1") -> RequestRecord:
    record = RequestRecord(request_id, "POST", "/v1/chat/completions")
    record.status, record.key_id, record.model, record.route = 200, "master", "qwen-text", "chat"
    record.meter.prompt_tokens, record.meter.completion_tokens = 7, 2
    return record


def test_json_lines_are_the_entries_and_wait_for_the_loop_turn(
        stream: _CountingStream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("INFO", "json")
    log_request(_record("outside"))  # no event loop: written at once
    assert orjson.loads(stream.getvalue())["request_id"] == "outside"

    async def three() -> str:
        for n in range(3):
            log_request(_record(f"in-{n}"))
        pending = stream.getvalue()
        await asyncio.sleep(0)  # the loop turns: the three lines go out together
        await asyncio.sleep(0)
        return pending

    before = stream.writes
    pending = asyncio.run(three())
    assert "in-0" not in pending
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["outside", "in-0", "in-1", "in-2"]
    assert lines[1]["status"] == 200 and lines[1]["prompt_tokens"] == 7
    assert stream.writes == before + 1


def test_text_lines_read_as_the_formatter_writes_them(
        stream: _CountingStream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("INFO", "text")
    record = _record()
    log_request(record)
    direct = stream.getvalue().strip()
    via_logging = TextFormatter().format(logging.LogRecord(
        "tram.access", logging.INFO, "", 0, orjson.dumps(record.as_log()).decode(), (), None))
    # The same line but for the duration (measured again) and the clock's seconds.
    assert direct.split(" ", 1)[1].split(" ms ", 1)[1] == \
        via_logging.split(" ", 1)[1].split(" ms ", 1)[1]
    assert direct.split(" ")[1:4] == ["POST", "/v1/chat/completions", "200"]


def test_a_capture_added_later_still_sees_access_lines(
        stream: _CountingStream, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("INFO", "json")
    logging.getLogger().addHandler(caplog.handler)
    log_request(_record("captured"))
    assert [orjson.loads(r.getMessage())["request_id"] for r in caplog.records
            if r.name == "tram.access"] == ["captured"]
    assert "captured" in stream.getvalue()  # and the gateway's own handler wrote it too
