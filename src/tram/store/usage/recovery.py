"""What dead gateway processes left: their journals (a file whose lock can be taken belongs to
a process that is gone) and spill files of versions before the journal. Their events are read
for storing, and every request that began but never ended is counted, logged and turned into
a `gateway_interrupted` event (`journal.py` describes the file)."""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tram.files import private_dir
from tram.store.usage.journal import BEGIN, END, JOURNAL_GLOB

__all__ = ["Recovered", "dead_journals"]

logger = logging.getLogger("tram.usage")

# Spill files of versions before the journal held them (beside the journal folder); stored
# once, at the next start.
_LEGACY_SPILLS = ("usage-spill.jsonl", "usage-spill.replaying")


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


def _store_legacy_spill(spill: Path, directory: Path) -> None:
    """Turn a spill file left by an older version (JSON lines, one event each) into a dead
    journal, which `_recover` then stores like any other."""
    claimed = directory / f".legacy-{os.getpid()}-{secrets.token_hex(4)}"
    private_dir(directory)
    try:
        os.rename(spill, claimed)  # atomic: one process claims it
    except FileNotFoundError:
        return
    name = f"usage-legacy-{secrets.token_hex(4)}.journal"
    hidden = directory / f".{name}.new"  # whole before recovery can see it
    hidden.write_bytes(b"".join(END + line + b"\n"
                                for line in claimed.read_bytes().splitlines() if line))
    os.rename(hidden, directory / name)
    claimed.unlink()


def _recover(directory: Path, own: Path | None) -> Recovered:
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
                if line[:1] == BEGIN:
                    begins[entry["event_id"]] = (entry, path)
                elif line[:1] == END:
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


def dead_journals(directory: Path, own: Path | None) -> Recovered | None:
    """The events of every dead process's journal in `directory` (older spill files first
    turned into journals), kept locked until `release`; None if there is no journal folder.
    `own`: this process's live journal, skipped."""
    for name in _LEGACY_SPILLS:
        if (directory.parent / name).exists():
            _store_legacy_spill(directory.parent / name, directory)
    if not directory.is_dir():
        return None
    return _recover(directory, own)
