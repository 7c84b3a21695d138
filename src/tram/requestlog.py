"""One record per request, filled in along the way and logged as one JSON line at the end.

The record never holds prompt or completion text, image data or keys: only ids, sizes, counts
and timings.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tram.logs import ACCESS, access_text
from tram.stamps import utc_stamp

__all__ = ["RequestRecord", "log_request"]

logger = logging.getLogger("tram.access")


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    # Names this request's usage row, so that replaying a journal never stores it twice.
    # Time-ordered (ns, then random), so the unique index grows at its end: random ids made
    # each row's insert ~40% dearer in SQLite (page splits all over the index).
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
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    first_byte_ms: float | None = None
    error_code: str | None = None
    client_disconnected: bool = False
    # Accounting when the engine does not report (relay/accounting.py): the engine has the
    # request (from the moment it is sent until it refuses it), the engine's usage covered the
    # whole answer, content/reasoning/tool deltas relayed, and whether the figures are estimated.
    engine_working: bool = False
    usage_final: bool = False
    relayed_deltas: int = 0
    tokens_estimated: bool = False

    def mark_first_byte(self) -> None:
        if self.first_byte_ms is None:
            self.first_byte_ms = round((time.perf_counter() - self.started) * 1000, 2)

    def take_usage(self, usage: Any, final: bool = True) -> None:
        """The engine's counts; `final` False for a running count (vLLM's continuous usage
        stats on every chunk), which a later one replaces. OpenAI chat's names
        (prompt/completion), Responses' and Anthropic's (input/output, Anthropic's cache reads
        and writes counted as prompt), or a total alone (rerank, score)."""
        if not isinstance(usage, dict):
            return
        self.usage_final = self.usage_final or final
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if prompt is None and completion is None:
            prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
            if isinstance(prompt, int):
                read, written = (usage.get("cache_read_input_tokens"),
                                 usage.get("cache_creation_input_tokens"))
                if isinstance(read, int):
                    self.cached_tokens = read
                    prompt += read
                if isinstance(written, int):
                    prompt += written
            elif completion is None and isinstance(usage.get("total_tokens"), int):
                prompt = usage["total_tokens"]
        if isinstance(prompt, int):
            self.prompt_tokens = prompt
        if isinstance(completion, int):
            self.completion_tokens = completion
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            self.cached_tokens = details["cached_tokens"]

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def as_usage(self) -> dict[str, Any]:
        """The usage event of this request (ids, counts and timings only)."""
        return {
            "event_id": self.event_id,
            "ts": utc_stamp(),
            "request_id": self.request_id,
            "key_id": self.key_id, "model": self.model, "served_model": self.served_model,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens, "images": self.images,
            "image_pixels": self.image_pixels, "stream": self.stream,
            "latency_ms": round(self.elapsed() * 1000, 2), "first_byte_ms": self.first_byte_ms,
            "status": self.status or 0, "error_code": self.error_code,
            "client_disconnected": self.client_disconnected,
            "tokens_estimated": self.tokens_estimated, "route": self.route or "chat",
        }

    def as_log(self) -> dict[str, Any]:
        entry = {k: v for k, v in self.__dict__.items()
                 if v is not None and k not in _NOT_LOGGED}
        entry["duration_ms"] = round(self.elapsed() * 1000, 2)
        return entry


_NOT_LOGGED = frozenset({"started", "event_id", "engine_working", "usage_final", "relayed_deltas"})


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
