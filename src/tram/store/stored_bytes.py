"""Each key's stored-response bytes (`stored_response_totals`), changed in the same transaction
as the rows they count, so the per-key cap is checked against one row instead of a sum over
every turn the key has stored. An upsert adds (row-locked in PostgreSQL, under SQLite's write
lock otherwise), so concurrent stores for one key each see the other's bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tram.store.db import Database
from tram.store.models import StoredResponseTotal

__all__ = ["StoredBytes"]

_TOTAL = StoredResponseTotal.__table__.c


class StoredBytes:
    def __init__(self, database: Database) -> None:
        # The dialect of the store's own engine (already imported by it).
        if database.url.startswith("postgresql"):
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        added = dialect.insert(StoredResponseTotal).values(key_id=bindparam("owner"),
                                                   size_bytes=bindparam("size"))
        self._add: Any = added.on_conflict_do_update(
            index_elements=["key_id"],
            set_={"size_bytes": _TOTAL.size_bytes + added.excluded.size_bytes},
        ).returning(_TOTAL.size_bytes)
        self._subtract = (update(StoredResponseTotal)
                          .where(_TOTAL.key_id == bindparam("owner"))
                          .values(size_bytes=_TOTAL.size_bytes - bindparam("gone")))

    async def add(self, connection: AsyncConnection, owner: str, size: int) -> int:
        """Count `size` more bytes for `owner`; its new total."""
        total = await connection.scalar(self._add, {"owner": owner, "size": size})
        return int(total or 0)

    async def subtract(self, connection: AsyncConnection, gone: Mapping[str, int]) -> None:
        """Count the bytes of deleted rows out, per key."""
        if gone:
            await connection.execute(self._subtract, [{"owner": owner, "gone": int(size)}
                                                      for owner, size in gone.items()])
