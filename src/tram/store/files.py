"""Files (`/v1/files`): the only SQL about them. A file is a row with its bytes (a SQLite blob,
a PostgreSQL bytea), so every gateway process and host sees it, and it is backed up with the
rest of the store. Every file belongs to the key that uploaded it (or, for a batch's output and
error files, to the key that made the batch): any other key is told it does not exist.
Listing reads the files' descriptions, never their bytes."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tram.store.db import Database
from tram.store.models import StoredFile

__all__ = ["FileInfo", "FileStore", "aware", "file_row", "new_file_id"]

_COLUMNS = (StoredFile.id, StoredFile.key_id, StoredFile.filename, StoredFile.purpose,
            StoredFile.size.label("size"), StoredFile.created_at)


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def aware(when: dt.datetime) -> dt.datetime:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class FileInfo:
    id: str
    key_id: str
    filename: str
    purpose: str
    size: int
    created_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
        """OpenAI's File object."""
        return {"id": self.id, "object": "file", "bytes": self.size,
                "created_at": int(aware(self.created_at).timestamp()),
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None, "expires_at": None}


def _info(row: Any) -> FileInfo:
    return FileInfo(row.id, row.key_id, row.filename, row.purpose, row.size,
                    aware(row.created_at))


def file_row(owner: str, filename: str, purpose: str, content: bytes,
             file_id: str | None = None) -> dict[str, Any]:
    return {"id": file_id or new_file_id(), "key_id": owner, "filename": filename,
            "purpose": purpose, "bytes": len(content), "created_at": dt.datetime.now(dt.UTC),
            "content": content}


class FileStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, owner: str, filename: str, purpose: str, content: bytes) -> FileInfo:
        row = file_row(owner, filename, purpose, content)
        async with self._db.engine.begin() as connection:
            await connection.execute(insert(StoredFile), row)
        return FileInfo(row["id"], owner, filename, purpose, row["bytes"], row["created_at"])

    @staticmethod
    async def insert(connection: AsyncConnection, row: dict[str, Any]) -> None:
        """A file written inside another transaction (a batch's output, with its status)."""
        await connection.execute(insert(StoredFile), row)

    async def get(self, owner: str, file_id: str) -> FileInfo | None:
        async with self._db.engine.connect() as connection:
            row = (await connection.execute(select(*_COLUMNS).where(
                StoredFile.id == file_id, StoredFile.key_id == owner))).first()
        return _info(row) if row is not None else None

    async def content(self, owner: str, file_id: str) -> bytes | None:
        async with self._db.engine.connect() as connection:
            found = await connection.scalar(select(StoredFile.content).where(
                StoredFile.id == file_id, StoredFile.key_id == owner))
        return bytes(found) if found is not None else None

    async def page(self, owner: str, *, purpose: str | None = None, after: str | None = None,
                   limit: int = 10000, newest_first: bool = True) -> list[FileInfo]:
        """The key's files, newest first (or oldest), from after the file `after`."""
        query = select(*_COLUMNS).where(StoredFile.key_id == owner)
        if purpose is not None:
            query = query.where(StoredFile.purpose == purpose)
        order = (StoredFile.created_at.desc(), StoredFile.id.desc()) if newest_first \
            else (StoredFile.created_at, StoredFile.id)
        async with self._db.engine.connect() as connection:
            if after is not None:
                anchor = await connection.scalar(select(StoredFile.created_at).where(
                    StoredFile.id == after, StoredFile.key_id == owner))
                if anchor is None:
                    return []
                query = query.where((StoredFile.created_at < anchor) | (
                    (StoredFile.created_at == anchor) & (StoredFile.id < after))) \
                    if newest_first else query.where((StoredFile.created_at > anchor) | (
                        (StoredFile.created_at == anchor) & (StoredFile.id > after)))
            rows = (await connection.execute(query.order_by(*order).limit(limit))).all()
        return [_info(row) for row in rows]

    async def delete(self, owner: str, file_id: str) -> bool:
        async with self._db.engine.begin() as connection:
            gone = await connection.scalar(delete(StoredFile).where(
                StoredFile.id == file_id, StoredFile.key_id == owner).returning(StoredFile.id))
        return gone is not None

