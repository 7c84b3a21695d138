"""Usage accounting off the request path: a batched background writer that loses nothing.

`begin()` and `record()` append a line to this process's journal (it survives `kill -9`) and
`record()` buffers the event (`spool.py`). A background task (`supervision.py`) writes batches
(`rows.py`), one flush at a time: a view that flushes waits for the writer's batch in
progress, so it sees every request answered before it. If the database is down or slow,
events stay buffered and are retried with backoff; past `max_buffer` the oldest leave memory
but not the journal. A clean shutdown lets the write in progress finish, writes what it can,
and leaves what the database would not take in the journal, which the next start (or
`tram usage`) stores (`recovery.py`). Every event carries an id and is inserted with ON
CONFLICT DO NOTHING, so replaying a journal twice never counts a request twice: every request
ends up as exactly one row, and a killed gateway loses only the token counts of the requests
it had in flight (recorded, counted and logged as `gateway_interrupted` by the next start).
Old rows are deleted by `retention.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from tram.config import UsageConfig
from tram.requestlog import RequestRecord
from tram.store.db import Database
from tram.store.usage.journal import Journal
from tram.store.usage.recovery import dead_journals
from tram.store.usage.retention import delete_older_than, keep_pruning
from tram.store.usage.rows import UsageRows
from tram.store.usage.spool import Spool
from tram.store.usage.supervision import WriterTask

__all__ = ["UsageWriter"]

logger = logging.getLogger("tram.usage")


class UsageWriter:
    def __init__(self, database: Database, journal_dir: Path, batch_size: int = 500,
                 flush_interval: float = 0.5, max_buffer: int = 50_000) -> None:
        self._db = database
        self._journal_dir = journal_dir
        self._batch_size = batch_size
        self._rows = UsageRows(database)
        self._spool = Spool(journal_dir, max_buffer)
        self._task = WriterTask(self.recover, self.flush, self.pending, flush_interval)
        self._lock = asyncio.Lock()  # one flush at a time
        self.written = 0
        self.recovered = 0
        self.interrupted = 0

    @property
    def shed(self) -> int:
        """Events that left memory and wait in the journal."""
        return self._spool.shed

    @property
    def lost(self) -> int:
        """Events that left memory with no journal to hold them (each logged as an error)."""
        return self._spool.lost

    @property
    def journal(self) -> Journal | None:
        """This process's journal file, once a request opened it."""
        return self._spool.journal

    def begin(self, record: RequestRecord, payload: object) -> None:
        """A request starts: journal it, so a killed gateway still leaves its trace."""
        self._spool.begin(record, payload)

    def record(self, event: dict[str, Any]) -> None:
        """Never blocks, never fails the request."""
        if self._spool.add(event) >= self._batch_size and not self._task.failing:
            self._task.wake()

    def pending(self) -> int:
        return len(self._spool.buffer)

    async def _write(self, events: list[dict[str, Any]]) -> None:
        self.written += await self._rows.insert(events)

    async def _write_all(self, events: Iterable[dict[str, Any]]) -> None:
        """Every event, in batches (already stored ones again: harmless)."""
        batch: list[dict[str, Any]] = []
        for event in events:
            batch.append(event)
            if len(batch) == self._batch_size:
                await self._write(batch)
                batch = []
        if batch:
            await self._write(batch)

    async def flush(self) -> None:
        """Write everything buffered now, after any batch already being written; raises if
        the database refuses (events are kept)."""
        async with self._lock:
            await self._spool.store_retired(self._write_all)
            # Only what is buffered now: under steady traffic the buffer never empties, and
            # chasing it wrote batches of a few rows back to back, each paying a transaction.
            # Later events wait for the next flush.
            remaining = self.pending()
            while remaining > 0 and self.pending():  # (shedding may have taken some meanwhile)
                batch = self._spool.take(min(self._batch_size, remaining))
                try:
                    await self._write(batch)
                except BaseException:
                    self._spool.put_back(batch)
                    raise
                remaining -= len(batch)
            self._spool.rotate_if_stored()

    async def recover(self) -> int:
        """Store what dead gateway processes left in their journals; the number of events."""
        # Retired files are skipped too: this process still holds their locks.
        own = self._spool.journal
        found = dead_journals(self._journal_dir, own.path if own is not None else None)
        if found is None:
            return 0
        try:
            await self._write_all(found.events)
        except BaseException:
            found.release(stored=False)
            raise
        found.release(stored=True)
        self.recovered += len(found.events)
        self.interrupted += found.interrupted
        return len(found.events)

    def start(self) -> None:
        """Run the writer in the background until `close`."""
        self._task.start()

    async def close(self, deadline: float = 10.0) -> None:
        """Stop the writer after the write in progress, store what the database takes within
        `deadline`, and leave the rest in the journal for the next start."""
        ends = time.monotonic() + deadline
        await self._task.stop(deadline)
        try:
            await asyncio.wait_for(self.flush(), max(ends - time.monotonic(), 0.1))
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            logger.warning("usage: flush at shutdown failed (%s)", type(exc).__name__)
        self._spool.keep_unstored()

    async def prune(self, older_than: dt.datetime, batch: int, pause: float = 0.05) -> int:
        """Delete rows older than a time, `batch` rows per short transaction; the number."""
        return await delete_older_than(self._db, older_than, batch, pause)

    async def prune_forever(self, config: UsageConfig) -> None:
        await keep_pruning(self._db, config)
