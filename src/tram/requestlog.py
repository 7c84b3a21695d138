"""One record per request, filled in along the way and logged as one JSON line at the end.

The record never holds prompt or completion text, image data or keys: only ids, sizes, counts
and timings.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from tram.logs import ACCESS, access_text
from tram.meter import Meter
from tram.stamps import utc_stamp

__all__ = ["RequestRecord", "Traffic", "log_request"]

# A request's class: a client waiting for it, or a line of a batch (batches/), which runs on
# capacity nobody else is using. What the relay may read to queue or prioritise it.
Traffic = Literal["interactive", "batch"]

logger = logging.getLogger("tram.access")


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    # Names this request's usage row, so that replaying a journal never stores it twice.
    # Time-ordered (ns, then random), so the unique index grows at its end: random ids made
    # each row's insert dearer in SQLite (page splits all over the index; docs/decisions.md).
    event_id: str = field(default_factory=lambda: f"{time.time_ns():016x}{os.urandom(4).hex()}")
    status: int | None = None
    # The API route that records usage (chat, completions, responses, …); None for the rest.
    route: str | None = None
    key_id: str | None = None
    model: str | None = None
    served_model: str | None = None
    upstream: str | None = None
    stream: bool | None = None
    images: int = 0
    image_pixels: int = 0  # pixels of every image sent to the engine (after downscaling)
    first_byte_ms: float | None = None
    error_code: str | None = None
    client_disconnected: bool = False
    traffic: Traffic = "interactive"
    batch_id: str | None = None  # the batch whose line this request is
    # What the request cost: the engine's usage, what was relayed, settled at the end.
    meter: Meter = field(default_factory=Meter)

    @property
    def prompt_tokens(self) -> int | None:
        return self.meter.prompt_tokens

    @property
    def completion_tokens(self) -> int | None:
        return self.meter.completion_tokens

    @property
    def cached_tokens(self) -> int | None:
        return self.meter.cached_tokens

    @property
    def tokens_estimated(self) -> bool:
        return self.meter.estimated

    def mark_first_byte(self) -> None:
        if self.first_byte_ms is None:
            self.first_byte_ms = round((time.perf_counter() - self.started) * 1000, 2)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def as_usage(self) -> dict[str, Any]:
        """The usage event of this request (ids, counts and timings only)."""
        meter = self.meter
        return {
            "event_id": self.event_id,
            "ts": utc_stamp(),
            "request_id": self.request_id,
            "key_id": self.key_id, "model": self.model, "served_model": self.served_model,
            "prompt_tokens": meter.prompt_tokens, "completion_tokens": meter.completion_tokens,
            "cached_tokens": meter.cached_tokens, "images": self.images,
            "image_pixels": self.image_pixels, "stream": self.stream,
            "latency_ms": round(self.elapsed() * 1000, 2), "first_byte_ms": self.first_byte_ms,
            "status": self.status or 0, "error_code": self.error_code,
            "client_disconnected": self.client_disconnected,
            "tokens_estimated": meter.estimated, "route": self.route or "chat",
        }

    def as_log(self) -> dict[str, Any]:
        entry = {k: v for k, v in self.__dict__.items()
                 if v is not None and k not in _NOT_LOGGED}
        if self.traffic == "interactive":
            del entry["traffic"]  # the usual class goes without saying
        meter = self.meter
        for name, value in (("prompt_tokens", meter.prompt_tokens),
                            ("completion_tokens", meter.completion_tokens),
                            ("cached_tokens", meter.cached_tokens)):
            if value is not None:
                entry[name] = value
        if meter.estimated:
            entry["tokens_estimated"] = True
        entry["duration_ms"] = round(self.elapsed() * 1000, 2)
        return entry


_NOT_LOGGED = frozenset({"started", "event_id", "meter"})


def log_request(record: RequestRecord) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = ACCESS.target()
    if handler is None:  # logging set up otherwise (a test's capture, an embedding program)
        logger.info(orjson.dumps(record.as_log()).decode())
        return
    entry = record.as_log()
    if ACCESS.text:
        handler.write_line(f"{time.strftime('%H:%M:%S')} {access_text(entry)}")
    else:
        handler.write_line(orjson.dumps(entry).decode())
