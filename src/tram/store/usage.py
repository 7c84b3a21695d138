"""Usage accounting off the request path: a batched background writer that loses nothing.

`record()` only appends to an in-memory buffer. A background task writes batches; if the
database is down or slow, events stay buffered and are retried with backoff; past
`max_buffer`, the oldest go to a spill file (JSON lines) that is replayed into the database once
it answers again. A clean shutdown writes what it can and spills the rest, so every request
ends up as exactly one row (a crash loses at most the buffer in memory).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Integer as Integer_
from sqlalchemy import func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from tram.store.db import Database
from tram.store.models import UsageEvent

__all__ = ["UsageWriter", "usage_summary"]

logger = logging.getLogger("tram.usage")


class UsageWriter:
    def __init__(self, database: Database, spill_path: Path, batch_size: int = 500,
                 flush_interval: float = 0.5, max_buffer: int = 50_000) -> None:
        self._db = database
        self._spill_path = spill_path
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = asyncio.Event()
        self.written = 0
        self.spilled = 0

    def record(self, event: dict[str, Any]) -> None:
        """Never blocks, never fails the request."""
        self._buffer.append(event)
        if len(self._buffer) > self._max_buffer:
            self._spill([self._buffer.popleft() for _ in range(len(self._buffer) // 2)])
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    def pending(self) -> int:
        return len(self._buffer)

    def _spill(self, events: list[dict[str, Any]]) -> None:
        self._spill_path.parent.mkdir(parents=True, exist_ok=True)
        with self._spill_path.open("ab") as spill:
            for event in events:
                spill.write(orjson.dumps(event, default=str) + b"\n")
        self.spilled += len(events)
        logger.warning("usage: database behind, %d events spilled to %s", len(events),
                       self._spill_path)

    async def _write(self, events: list[dict[str, Any]]) -> None:
        rows = [{**e, "ts": dt.datetime.fromisoformat(e["ts"]) if isinstance(e["ts"], str)
                 else e["ts"]} for e in events]
        async with self._db.sessions.begin() as session:
            await session.execute(insert(UsageEvent), rows)
        self.written += len(rows)

    async def _replay_spill(self) -> None:
        """Write spilled events; on failure, the ones not yet written stay on disk."""
        replaying = self._spill_path.with_suffix(".replaying")
        if self._spill_path.exists():
            with replaying.open("ab") as pending:
                pending.write(self._spill_path.read_bytes())
            self._spill_path.unlink()
        if not replaying.exists():
            return
        events = [orjson.loads(line) for line in replaying.read_bytes().splitlines() if line]
        done = 0
        try:
            for start in range(0, len(events), self._batch_size):
                await self._write(events[start:start + self._batch_size])
                done = min(start + self._batch_size, len(events))
        except BaseException:
            replaying.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[done:]))
            raise
        replaying.unlink()

    async def flush(self) -> None:
        """Write everything buffered now; raises if the database refuses (events are kept)."""
        await self._replay_spill()
        while self._buffer:
            batch = [self._buffer.popleft()
                     for _ in range(min(self._batch_size, len(self._buffer)))]
            try:
                await self._write(batch)
            except BaseException:
                self._buffer.extendleft(reversed(batch))
                raise

    async def run(self) -> None:
        backoff = self._flush_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            self._wake.clear()
            try:
                await self.flush()
                backoff = self._flush_interval
            except (SQLAlchemyError, OSError) as exc:
                backoff = min(backoff * 2, 30.0)
                logger.warning("usage: database unavailable (%s); %d events buffered, retry in "
                               "%.1fs", type(exc).__name__, len(self._buffer), backoff)

    async def close(self, deadline: float = 10.0) -> None:
        """Flush on shutdown; whatever cannot be written in time is spilled, not dropped."""
        try:
            await asyncio.wait_for(self.flush(), deadline)
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            logger.warning("usage: flush at shutdown failed (%s); spilling %d events",
                           type(exc).__name__, len(self._buffer))
        if self._buffer:
            self._spill(list(self._buffer))
            self._buffer.clear()


async def usage_summary(database: Database, group_by: str,
                        since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Requests, tokens and errors grouped by key, model or day."""
    column = {"key": UsageEvent.key_id, "model": UsageEvent.model,
              "day": func.date(UsageEvent.ts)}[group_by]
    query: Any = select(
        column.label("group"),
        func.count().label("requests"),
        func.coalesce(func.sum(UsageEvent.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(UsageEvent.completion_tokens), 0).label("completion_tokens"),
        func.sum(func.cast(UsageEvent.status >= 400, Integer_)).label("errors"),
    ).group_by(column).order_by(func.count().desc())
    if since is not None:
        query = query.where(UsageEvent.ts >= since)
    async with database.sessions() as session:
        rows = (await session.execute(query)).all()
    return [{group_by: str(r.group) if r.group is not None else None, "requests": r.requests,
             "prompt_tokens": int(r.prompt_tokens), "completion_tokens": int(r.completion_tokens),
             "total_tokens": int(r.prompt_tokens) + int(r.completion_tokens),
             "errors": int(r.errors or 0)} for r in rows]
