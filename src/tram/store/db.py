"""The database: an async engine for SQLite (default, WAL) or PostgreSQL, migrated with Alembic."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from tram.files import private_sqlite_file

__all__ = ["HEAD_REVISION", "Database", "database_url"]

logger = logging.getLogger("tram.store")

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest migration; a test checks it against Alembic's own view of the scripts.
HEAD_REVISION = "0010"


def database_url(configured: str | None, data_dir: Path) -> str:
    """The async SQLAlchemy URL: TRAM_DATABASE_URL / database.url, else a SQLite file."""
    url = configured or f"sqlite:///{data_dir / 'tram.db'}"
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    # In WAL mode NORMAL syncs at checkpoints, not on every commit: a power cut may lose the
    # last commits but never corrupts the file (a crashed process loses nothing); usage has its
    # own journal, and a stored response per request no longer costs an fsync.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")  # several workers share the file
    cursor.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1]
            if path and not path.startswith(":memory:"):
                private_sqlite_file(Path(path))
        # A PostgreSQL restart leaves dead connections in the pool; a ping at checkout (once
        # per batch or key lookup, not per request) finds them before a write fails on one.
        self.engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=url.startswith("postgresql"))
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def schema_revision(self) -> str | None:
        try:
            async with self.engine.connect() as connection:
                found = await connection.scalar(text("SELECT version_num FROM alembic_version"))
                return str(found) if found is not None else None
        except DBAPIError:
            return None  # a new database: no table yet

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent).

        When it is there already (`tram serve` migrates once before its workers start), Alembic
        is not even imported: it would add ~9 MB to every worker's memory for nothing.
        """
        if await self.schema_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        def upgrade(connection: Any) -> None:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        before = await self.schema_revision()
        async with self.engine.begin() as connection:
            await connection.run_sync(upgrade)
        if before:
            logger.info("database schema upgraded from revision %s to %s", before, HEAD_REVISION)
        else:
            logger.info("database schema created at revision %s", HEAD_REVISION)

    @property
    def local_file(self) -> Path | None:
        """The SQLite file, when the store is one (shared only by processes on this host)."""
        if self.url.startswith("sqlite"):
            return Path(self.url.split(":///", 1)[1])
        return None

    async def aclose(self) -> None:
        await self.engine.dispose()
