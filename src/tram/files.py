"""Files Trạm keeps for itself (the SQLite store, its WAL, journals, the master key) are
private to the user running it: key digests and usage are nobody else's business."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["cache_dir", "private_dir", "private_sqlite_file"]


def cache_dir() -> Path:
    """Where the set-up builds and installs what Trạm runs (llama-server, models, vLLM's CPU
    build): $TRAM_CACHE_DIR, else $XDG_CACHE_HOME/tram, else ~/.cache/tram; the same folder as
    scripts/setup.sh's."""
    if os.environ.get("TRAM_CACHE_DIR"):
        return Path(os.environ["TRAM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tram"

_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path, tighten: bool = False) -> None:
    """Create `path` and any missing parent as mode 0700. With `tighten`, an existing folder of
    this user's that others can read is made 0700 too (Trạm's own data folder, created 0755 by
    earlier versions); otherwise an existing folder is the operator's choice and left alone."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    if tighten and not missing:
        _tighten(path, 0o700)


def private_sqlite_file(path: Path) -> None:
    """The database file exists, mode 0600, before SQLite opens it: SQLite gives its WAL and
    shared-memory files the database file's mode. Files of earlier versions are tightened."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    for suffix in _SQLITE_COMPANIONS:
        _tighten(path.with_name(path.name + suffix), 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, mode)
