"""Logging set-up: readable one-line logs for a person at a terminal, JSON lines for machines.

`--log-format text|json` (or TRAM_LOG_FORMAT); by default text when stderr is a terminal, else
JSON (one object per line; access lines are JSON already). Third-party chatter that says
nothing to an operator (Alembic's plugin set-up and per-revision lines, httpx's per-request
lines) is kept below INFO.

Every request writes an access line, so a line must be cheap: lines are written to stderr
once per turn of the event loop (`TurnBufferedHandler`: one write(2) for all the lines of a
turn instead of one each), and the LogRecord fields nobody here prints (the caller's file and
line, which walks the stack; thread and process names) are not collected. An access line cost
a third of what it cost before (docs/decisions.md).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

from tram.turns import PerTurn

__all__ = ["ACCESS", "AccessWriter", "TurnBufferedHandler", "access_text", "resolve_format",
           "setup_logging"]


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "tram.access":
            return message
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """`12:01:02 INFO  tram.app  message`; an access line as `POST /v1/… 200 12.3 ms …`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        message = record.getMessage()
        if record.name == "tram.access":
            message = _access_line(message)
            return f"{stamp} {message}"
        line = f"{stamp} {record.levelname:<7} {record.name:<16} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _access_line(raw: str) -> str:
    try:
        entry: dict[str, Any] = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    return access_text(entry)


def access_text(entry: dict[str, Any]) -> str:
    """An access entry as a person reads it: `POST /v1/… 200 12.3 ms model=… id=…`."""
    parts = [str(entry.get("method", "")), str(entry.get("path", "")),
             str(entry.get("status", "-")), f"{entry.get('duration_ms', 0):.1f} ms"]
    for name in ("model", "route", "key_id", "batch_id", "error_code"):
        if entry.get(name):
            parts.append(f"{name.removesuffix('_id')}={entry[name]}")
    if entry.get("prompt_tokens") is not None or entry.get("completion_tokens") is not None:
        parts.append(f"tokens={entry.get('prompt_tokens', 0)}+{entry.get('completion_tokens', 0)}")
    if entry.get("first_byte_ms") is not None:
        parts.append(f"ttfb={entry['first_byte_ms']:.0f} ms")
    parts.append(f"id={entry.get('request_id', '')}")
    return " ".join(parts)


class AccessWriter:
    """The access log's direct path, set by `setup_logging`: while its handler is the only
    one (no other handler, filter or level was added since, e.g. by a test's log capture), an
    access line goes straight to it, formatted as its formatter would, skipping the LogRecord
    and handler chain (docs/decisions.md)."""

    def __init__(self) -> None:
        self.handler: TurnBufferedHandler | None = None
        self.text = False
        self._root = logging.getLogger()
        self._access = logging.getLogger("tram.access")

    def target(self) -> TurnBufferedHandler | None:
        handler = self.handler
        if handler is None:
            return None
        root, access = self._root, self._access
        if root.handlers == [handler] and not access.handlers and access.propagate \
                and not access.filters and not root.filters and not handler.filters:
            return handler
        return None


ACCESS = AccessWriter()


def resolve_format(fmt: str | None) -> str:
    """text or json: as asked, else TRAM_LOG_FORMAT, else text at a terminal."""
    chosen = fmt or os.environ.get("TRAM_LOG_FORMAT")
    if chosen in ("text", "json"):
        return chosen
    return "text" if sys.stderr.isatty() else "json"


class TurnBufferedHandler(logging.Handler):
    """Lines written to a text stream once per turn of the event loop that logged them; at
    once from a thread without a running loop (after what is pending, so the order holds).
    A kill -9 loses at most the lines of the turn it interrupts."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream
        self._lines: PerTurn[str] = PerTurn(self._write, on_turn_end=self.flush)

    def emit(self, record: logging.LogRecord) -> None:  # called under self.lock
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 (logging's contract: report it, never raise)
            self.handleError(record)
            return
        self._lines.add(line)

    def write_line(self, line: str) -> None:
        """A line formatted already (the access log's own path: no LogRecord to build)."""
        self.acquire()
        try:
            self._lines.add(line)
        finally:
            self.release()

    def flush(self) -> None:
        self.acquire()
        try:
            self._lines.flush()
        finally:
            self.release()

    def _write(self, lines: list[str]) -> None:
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: nowhere left to report it
            pass


def setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    # Documented optimisations (logging HOWTO, "Optimization"): none of these record fields is
    # printed by the formatters below.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = TurnBufferedHandler(sys.stderr)
    text = resolve_format(fmt) == "text"
    handler.setFormatter(TextFormatter() if text else JSONFormatter())
    ACCESS.handler, ACCESS.text = handler, text
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").disabled = True  # tram.access logs each request
    # httpx logs every engine request at INFO: noise beside tram.access, and work on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # A dozen "setup plugin …" and "Running upgrade …" lines on a first start; the store says
    # itself when it upgraded the schema (store/db.py).
    logging.getLogger("alembic").setLevel(logging.WARNING)
