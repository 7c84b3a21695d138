"""Usage events between the request and the database: this process's journal, the in-memory
buffer, and shedding when the database falls behind.

Every event is journaled and buffered. Past `max_buffer`, the oldest half leave memory but not
the journal: the journal file holding them is retired (continued in a fresh one) and read back
once the database answers (`store_retired`). At shutdown whatever the database did not take
stays in the journal for the next start (`keep_unstored`).
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from tram.requestlog import RequestRecord
from tram.stamps import utc_stamp
from tram.store.usage.journal import Journal, ended_events

__all__ = ["Spool"]

logger = logging.getLogger("tram.usage")

# Past this size (bytes), the journal is replaced by a fresh one once its events are stored.
_JOURNAL_ROTATE = 1 << 20

WriteAll = Callable[[Iterable[dict[str, Any]]], Awaitable[None]]


class Spool:
    def __init__(self, journal_dir: Path, max_buffer: int) -> None:
        self._journal_dir = journal_dir
        self._max_buffer = max_buffer
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.journal: Journal | None = None  # opened lazily: only gateways write usage
        self.journal_failed = False
        # Journal files whose events (some no longer in memory) are not all stored yet.
        self._retired: list[tuple[Path, int]] = []
        self._shed_pending = 0  # events only in the current journal file
        self.shed = 0  # left memory, kept in the journal
        self.lost = 0  # left memory with no journal to hold them (logged as errors)

    def _journal_open(self) -> Journal | None:
        if self.journal is None and not self.journal_failed:
            try:
                self.journal = Journal(self._journal_dir)
            except OSError as exc:
                # Usage is still recorded (buffer, database); a kill -9, or a long outage
                # followed by a shutdown, would now lose events. Requests must not fail for it.
                self.journal_failed = True
                logger.error("usage: cannot open a journal in %s (%s); running without one",
                             self._journal_dir, exc.strerror)
        return self.journal

    def begin(self, record: RequestRecord, payload: object) -> None:
        """A request starts: journal it, so a killed gateway still leaves its trace."""
        model = payload.get("model") if isinstance(payload, dict) else None
        stream = payload.get("stream") if isinstance(payload, dict) else None
        journal = self.journal if self.journal is not None else self._journal_open()
        if journal is None:
            return
        journal.begin(record.event_id, {
            "event_id": record.event_id,
            "ts": utc_stamp(),
            "request_id": record.request_id, "key_id": record.key_id,
            "model": model[:200] if isinstance(model, str) else None,
            "stream": stream if isinstance(stream, bool) else None,
            "route": record.route or "chat"})

    def add(self, event: dict[str, Any]) -> int:
        """Journal and buffer an event; the number buffered."""
        journal = self.journal if self.journal is not None else self._journal_open()
        if journal is not None:
            journal.end(event)
        self.buffer.append(event)
        if len(self.buffer) > self._max_buffer:
            self._shed(len(self.buffer) // 2)
        return len(self.buffer)

    def _shed(self, count: int) -> None:
        """The database is behind: memory stays bounded by letting the oldest events go."""
        for _ in range(count):
            self.buffer.popleft()
        if self.journal is not None and self.journal.intact:
            self._shed_pending += count
            self.shed += count
            logger.warning("usage: database behind; %d events wait in the journal %s",
                           count, self.journal.path.name)
        else:
            self.lost += count
            logger.error("usage: database behind and no journal to hold them: %d usage events "
                         "lost", count)

    def take(self, count: int) -> list[dict[str, Any]]:
        """Up to `count` of the oldest buffered events, for a write (`put_back` if it fails)."""
        return [self.buffer.popleft() for _ in range(min(count, len(self.buffer)))]

    def put_back(self, events: list[dict[str, Any]]) -> None:
        self.buffer.extendleft(reversed(events))

    async def store_retired(self, write_all: WriteAll) -> None:
        """Write what left memory, from the journal files that hold it, then remove them."""
        if self._shed_pending and self.journal is not None:
            # What left memory is in the current file: retire it and read it back.
            self._retired.append(self.journal.retire())
            self._shed_pending = 0
        while self._retired:
            path, fd = self._retired[0]
            await write_all(ended_events(path))
            self._retired.pop(0)
            path.unlink(missing_ok=True)
            os.close(fd)

    def rotate_if_stored(self) -> None:
        """After a flush: a large journal is replaced, if every event it holds is stored
        (nothing buffered, shed or retired arrived meanwhile)."""
        if not self.buffer and not self._shed_pending and not self._retired \
                and self.journal is not None and self.journal.size > _JOURNAL_ROTATE:
            self.journal.rotate()

    def keep_unstored(self) -> None:
        """At shutdown, after the last flush: what the database did not take stays in the
        journal for the next start (or is counted lost, with no journal to hold it)."""
        journal, self.journal = self.journal, None
        if journal is None or not journal.intact:
            self._drop_unjournaled(journal)
            return
        unstored = len(self.buffer) + self._shed_pending
        for path, fd in self._retired:  # one file for the next start to recover
            for event in ended_events(path):
                journal.end(event)
                unstored += 1
            path.unlink(missing_ok=True)
            os.close(fd)
        self._retired.clear()
        if unstored:
            logger.warning("usage: up to %d events the database did not take at shutdown wait "
                           "in %s; the next start stores them", unstored, journal.path)
        self.buffer.clear()
        # Everything is stored or in the journal; a request still in flight keeps the journal
        # too, so the next start counts it.
        journal.close(remove=not unstored and journal.in_flight() == 0)

    def _drop_unjournaled(self, journal: Journal | None) -> None:
        if self.buffer:
            self.lost += len(self.buffer)
            logger.error("usage: %d usage events lost at shutdown: the database did not "
                         "take them and no journal holds them", len(self.buffer))
        self.buffer.clear()
        for _, fd in self._retired:  # left for the next start to recover
            os.close(fd)
        self._retired.clear()
        if journal is not None:
            journal.close(remove=False)  # what it does hold, the next start stores
