"""The usage journal: what survives `kill -9`.

Each gateway process appends to its own file a `B` line when a chat request begins and an `E`
line (the full usage event) when it ends, no fsync. Lines are written with one write(2) per
turn of the event loop (turns.py: all the lines of the requests that began or ended in it): two
write(2) per request were a tenth of the gateway's CPU per request (docs/decisions.md).
A line waits at most until the loop's next turn, i.e. until the request's answer has left
(microseconds); a killed process's writes are then in the kernel's page cache, so they survive
it (an OS crash or a power cut is what fsync would be for; that trade is deliberate, it would
cost a disk flush per request). The process holds an exclusive flock on its file for its whole
life; a file whose lock can be taken belongs to a dead process, and the next gateway to start
recovers it: its events are written to the store, and every `B` without an `E` (a request in
flight when the process died) is counted, logged and recorded as `gateway_interrupted`
(`recovery.py`).

Once every event of the current file is in the database, the file is replaced by a fresh one
that starts with the `B` lines of the requests still in flight, so it stays small. The journal is
also where events wait when the database is down for long: past its memory bound the writer lets
the oldest events go from memory and later reads them back from a retired journal file (see
`spool.py`), so one file format and one recovery path cover a crash, an outage and a shutdown
with the database down.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tram.files import private_dir
from tram.turns import PerTurn

__all__ = ["BEGIN", "END", "JOURNAL_GLOB", "Journal", "ended_events"]

logger = logging.getLogger("tram.usage")

JOURNAL_GLOB = "usage-*.journal"
BEGIN, END = b"B", b"E"  # the first byte of each line


class Journal:
    """This process's journal file (O_APPEND, flock held until `close`)."""

    def __init__(self, directory: Path) -> None:
        private_dir(directory)
        self._directory = directory
        self._in_flight: dict[str, bytes] = {}  # event id -> its B line
        self.path, self._fd = self._open()
        self.size = 0
        self.intact = True  # False once a write failed: the file no longer holds every event
        self._lines: PerTurn[bytes] = PerTurn(self._write_lines)

    def _open(self) -> tuple[Path, int]:
        name = f"usage-{os.getpid()}-{secrets.token_hex(4)}.journal"
        # Locked under a name recovery does not look at, then renamed (the lock stays with the
        # file): another process's recovery can never take a live journal for a dead one's.
        hidden = self._directory / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self._directory / name
        os.rename(hidden, path)
        return path, fd

    def begin(self, event_id: str, entry: dict[str, Any]) -> None:
        line = BEGIN + orjson.dumps(entry) + b"\n"
        self._in_flight[event_id] = line
        self._write(line)

    def end(self, event: dict[str, Any]) -> None:
        self._in_flight.pop(event["event_id"], None)
        self._write(END + orjson.dumps(event, default=str) + b"\n")

    def _write(self, line: bytes) -> None:
        self._lines.add(line)  # written at the end of this turn of the event loop

    def flush(self) -> None:
        """Write the lines gathered in this turn of the event loop now."""
        self._lines.flush()

    def _write_lines(self, lines: list[bytes]) -> None:
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        try:
            os.write(self._fd, data)
            self.size += len(data)
        except OSError as exc:  # a full disk must not fail requests; the buffer still has it
            self.intact = False
            logger.error("usage: journal write failed (%s)", exc.strerror)

    def in_flight(self) -> int:
        return len(self._in_flight)

    def retire(self) -> tuple[Path, int]:
        """Continue in a fresh file that starts with the B lines of what is in flight; the old
        file and its still-locked descriptor are returned (read it with `ended_events`)."""
        self.flush()  # what is queued belongs to the old file
        old = self.path, self._fd
        self.path, self._fd = self._open()
        self.size = 0
        self.intact = True
        self._write_lines([b"".join(self._in_flight.values())])
        return old

    def rotate(self) -> None:
        """Call only when every E line written so far is in the database."""
        old_path, old_fd = self.retire()
        os.close(old_fd)
        old_path.unlink(missing_ok=True)

    def close(self, remove: bool) -> None:
        """`remove`: everything is stored and nothing is in flight."""
        self.flush()
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)


def ended_events(path: Path) -> Iterator[dict[str, Any]]:
    """The events (E lines) of a journal file; a line cut by a kill is skipped."""
    with path.open("rb") as lines:
        for line in lines:
            if line[:1] == END:
                with contextlib.suppress(orjson.JSONDecodeError):
                    yield orjson.loads(line[1:])
