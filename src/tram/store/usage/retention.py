"""Retention: usage rows older than `usage.retention_days` are deleted in small batches, each
its own short transaction with a pause between, so neither SQLite nor PostgreSQL is locked for
the writers."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from tram.config import UsageConfig
from tram.store.db import Database
from tram.store.models import UsageEvent

__all__ = ["delete_older_than", "keep_pruning"]

logger = logging.getLogger("tram.usage")


async def delete_older_than(database: Database, older_than: dt.datetime, batch: int,
                pause: float = 0.05) -> int:
    """Delete rows older than a time, `batch` rows per transaction; the number deleted."""
    total = 0
    while True:
        oldest = (select(UsageEvent.id).where(UsageEvent.ts < older_than)
                  .order_by(UsageEvent.id).limit(batch))
        async with database.engine.begin() as connection:
            result = await connection.execute(
                delete(UsageEvent).where(UsageEvent.id.in_(oldest.scalar_subquery())))
        deleted = int(result.rowcount or 0)
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(pause)  # let the writers in between batches


async def keep_pruning(database: Database, config: UsageConfig) -> None:
    """A pass every `prune_interval` seconds, for as long as the gateway runs."""
    assert config.retention_days is not None
    while True:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=config.retention_days)
        try:
            deleted = await delete_older_than(database, cutoff, config.prune_batch)
            if deleted:
                logger.info("usage: pruned %d rows older than %s", deleted, cutoff.isoformat())
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("usage: pruning failed (%s); next pass in %.0fs",
                           type(exc).__name__, config.prune_interval)
        await asyncio.sleep(config.prune_interval)
