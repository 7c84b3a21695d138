"""The usage journal: what survives `kill -9`.

Each gateway process appends to its own file a `B` line when a chat request begins and an `E`
line (the full usage event) when it ends, no fsync. Lines are written with one write(2) per
turn of the event loop (turns.py: all the lines of the requests that began or ended in it): two
write(2) per request were ~10% of the gateway's CPU per request (bench/RESULTS.md, issue 16).
A line waits at most until the loop's next turn, i.e. until the request's answer has left
(microseconds); a killed process's writes are then in the kernel's page cache, so they survive
it (an OS crash or a power cut is what fsync would be for; that trade is deliberate, it would
cost a disk flush per request). The process holds an exclusive flock on its file for its whole
life; a file whose lock can be taken belongs to a dead process, and the next gateway to start
recovers it: its events are written to the store, and every `B` without an `E` (a request in
flight when the process died) is counted, logged and recorded as `gateway_interrupted`.

Once every event of the current file is in the database, the file is replaced by a fresh one
that starts with the `B` lines of the requests still in flight, so it stays small. The journal is
also where events wait when the database is down for long: past its memory bound the writer lets
the oldest events go from memory and later reads them back from a retired journal file (see
`usage.py`), so one file format and one recovery path cover a crash, an outage and a shutdown
with the database down.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tram.files import private_dir
from tram.turns import PerTurn

__all__ = ["JOURNAL_GLOB", "Journal", "Recovered", "ended_events", "recover",
           "store_legacy_spill"]

logger = logging.getLogger("tram.usage")

JOURNAL_GLOB = "usage-*.journal"
_BEGIN, _END = b"B", b"E"


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
        line = _BEGIN + orjson.dumps(entry) + b"\n"
        self._in_flight[event_id] = line
        self._write(line)

    def end(self, event: dict[str, Any]) -> None:
        self._in_flight.pop(event["event_id"], None)
        self._write(_END + orjson.dumps(event, default=str) + b"\n")

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


@dataclass
class Recovered:
    """The events in dead processes' journals, and the files to remove once stored."""

    events: list[dict[str, Any]] = field(default_factory=list)
    interrupted: int = 0
    files: list[tuple[Path, int]] = field(default_factory=list)  # path and its locked fd

    def release(self, stored: bool) -> None:
        for path, fd in self.files:
            if stored:
                path.unlink(missing_ok=True)
            os.close(fd)
        self.files.clear()


def _interrupted_event(begin: dict[str, Any], died_at: float) -> dict[str, Any]:
    started = dt.datetime.fromisoformat(begin["ts"])
    return {
        **begin, "served_model": None, "prompt_tokens": None, "completion_tokens": None,
        "cached_tokens": None, "images": 0, "first_byte_ms": None,
        # The process died at the latest when its journal was last written.
        "latency_ms": max(0.0, round((died_at - started.timestamp()) * 1000, 2)),
        "status": 500, "error_code": "gateway_interrupted", "client_disconnected": False,
    }


def ended_events(path: Path) -> Iterator[dict[str, Any]]:
    """The events (E lines) of a journal file; a line cut by a kill is skipped."""
    with path.open("rb") as lines:
        for line in lines:
            if line[:1] == _END:
                with contextlib.suppress(orjson.JSONDecodeError):
                    yield orjson.loads(line[1:])


def store_legacy_spill(spill: Path, directory: Path) -> None:
    """Turn a spill file left by an older version (JSON lines, one event each) into a dead
    journal, which `recover` then stores like any other."""
    claimed = directory / f".legacy-{os.getpid()}-{secrets.token_hex(4)}"
    private_dir(directory)
    try:
        os.rename(spill, claimed)  # atomic: one process claims it
    except FileNotFoundError:
        return
    name = f"usage-legacy-{secrets.token_hex(4)}.journal"
    hidden = directory / f".{name}.new"  # whole before recovery can see it
    hidden.write_bytes(b"".join(_END + line + b"\n"
                                for line in claimed.read_bytes().splitlines() if line))
    os.rename(hidden, directory / name)
    claimed.unlink()


def recover(directory: Path, own: Path | None) -> Recovered:
    """Read every journal whose owner is gone (its lock is free), keeping them locked."""
    recovered = Recovered()
    begins: dict[str, tuple[dict[str, Any], Path]] = {}
    ended: dict[str, dict[str, Any]] = {}
    died_at: dict[Path, float] = {}
    for path in sorted(directory.glob(JOURNAL_GLOB)):
        if path == own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another process recovered it meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError  # recovered and removed meanwhile by another process
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            continue  # its process is alive, or another one recovered it first
        recovered.files.append((path, fd))
        died_at[path] = os.fstat(fd).st_mtime
        with open(fd, "rb", closefd=False) as lines:
            for line in lines:
                try:
                    entry = orjson.loads(line[1:])
                except orjson.JSONDecodeError:
                    continue  # a line cut by the kill
                if line[:1] == _BEGIN:
                    begins[entry["event_id"]] = (entry, path)
                elif line[:1] == _END:
                    # Events from before ids (0004, legacy spill files) are kept apart.
                    ended[entry.get("event_id") or f"no-id-{len(ended)}"] = entry
    # Across all files: a request that began in a retired file may have ended in the next one.
    lost = {i: (b, path) for i, (b, path) in begins.items() if i not in ended}
    recovered.events += [*ended.values(),
                         *(_interrupted_event(b, died_at[path]) for b, path in lost.values())]
    recovered.interrupted += len(lost)
    if lost:
        logger.warning("usage: gateway processes died with %d requests in flight (%s); they "
                       "are recorded as gateway_interrupted, tokens unknown", len(lost),
                       ", ".join(sorted({path.name for _, path in lost.values()})))
    return recovered
