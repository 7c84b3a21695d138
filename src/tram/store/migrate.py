"""`python -m tram.store.migrate URL`: bring a database to the newest schema, in a process of
its own, so that the gateway that asked never loads Alembic (~9 MB per process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tram.store.db import HEAD_REVISION, Database

__all__ = ["migrate_out_of_process"]


async def migrate_out_of_process(database: Database) -> None:
    """Migrate `database` in a child process, unless it is at the newest revision already."""
    if await database.schema_revision() == HEAD_REVISION:
        return
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tram.store.migrate", database.url],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"database migration failed: {result.stderr.strip()[-2000:]}")


async def _main(url: str) -> None:
    database = Database(url)
    try:
        await database.migrate()
    finally:
        await database.aclose()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
