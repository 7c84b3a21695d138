"""Logging set-up: readable one-line logs for a person at a terminal, JSON lines for machines.

`--log-format text|json` (or TRAM_LOG_FORMAT); by default text when stderr is a terminal, else
JSON (one object per line; access lines are JSON already). Third-party chatter that says
nothing to an operator (Alembic's plugin set-up and per-revision lines, httpx's per-request
lines) is kept below INFO.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

__all__ = ["resolve_format", "setup_logging"]


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
    parts = [str(entry.get("method", "")), str(entry.get("path", "")),
             str(entry.get("status", "-")), f"{entry.get('duration_ms', 0):.1f} ms"]
    for name in ("model", "route", "key_id", "error_code"):
        if entry.get(name):
            parts.append(f"{name.removesuffix('_id')}={entry[name]}")
    if entry.get("prompt_tokens") is not None or entry.get("completion_tokens") is not None:
        parts.append(f"tokens={entry.get('prompt_tokens', 0)}+{entry.get('completion_tokens', 0)}")
    if entry.get("first_byte_ms") is not None:
        parts.append(f"ttfb={entry['first_byte_ms']:.0f} ms")
    parts.append(f"id={entry.get('request_id', '')}")
    return " ".join(parts)


def resolve_format(fmt: str | None) -> str:
    """text or json: as asked, else TRAM_LOG_FORMAT, else text at a terminal."""
    chosen = fmt or os.environ.get("TRAM_LOG_FORMAT")
    if chosen in ("text", "json"):
        return chosen
    return "text" if sys.stderr.isatty() else "json"


def setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if resolve_format(fmt) == "text" else JSONFormatter())
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
