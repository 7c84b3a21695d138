"""A throw-away PostgreSQL server for tests (the machine's PostgreSQL binaries, run as the
`postgres` user because they refuse root), on a free port in a temporary folder."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.support.servers import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or name]
    return found[-1]


class Postgres:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tram-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        os.chmod(self.folder, 0o777)
        self._as_postgres([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "tram"])
        self.url = f"postgresql://tram@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, argv: list[str]) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(prefix + argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr or result.stdout}")

    def start(self) -> None:
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-w", "-l",
                           str(self.folder / "log"), "-o",
                           f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                           "start"])

    def new_database(self) -> str:
        """The URL of a new, empty database on this server."""
        name = f"t{time.time_ns()}"

        async def create() -> None:
            connection = await asyncpg.connect(self.url.replace("postgresql://", "postgres://"))
            try:
                await connection.execute(f"CREATE DATABASE {name}")
            finally:
                await connection.close()

        asyncio.run(create())
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
