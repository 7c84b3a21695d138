"""Stored responses: what `/v1/responses` keeps for `previous_response_id`, GET and DELETE.

Engines do not keep conversations across replicas or restarts (vLLM's store is in one
process's memory, llama.cpp has none), so the gateway keeps them in its own database, shared by
every gateway process. A row holds one request's own input items and its answer; a
conversation is its chain of rows, followed through `previous_id`. Every row belongs to the key
that made it: another key reading, deleting or continuing it gets a 404, as for an id that
does not exist. Rows older than `retention_days` are not served and are deleted.

A key holds at most `max_bytes_per_key` (the JSON of its turns' input and answers), enforced in
the transaction that stores a turn, against the key's running total (`stored_bytes.py`): the
key's oldest turns are deleted to make room (never the newest), and a turn larger than the
whole cap is not stored (`fits` says so beforehand, so the answer can say `store: false`).
Conversations are read back one turn at a time, newest first (`chain`), so a reader that has
read enough stops before the rest is loaded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from tram.config import ResponsesConfig
from tram.errors import StoreUnavailable
from tram.store.db import Database
from tram.store.models import StoredResponse
from tram.store.stored_bytes import StoredBytes

__all__ = ["ResponseStore", "StoredTurn"]

logger = logging.getLogger("tram.responses")


@dataclass(frozen=True)
class StoredTurn:
    id: str
    input_items: list[Any]
    response: dict[str, Any]


class ResponseStore:
    """Saves go through one writer task that commits whatever has queued up in one
    transaction (group commit): each request still waits until its row is committed (so its
    id can be continued at once, from any process), but concurrent saves share a commit
    instead of queueing on SQLite's write lock one busy-wait at a time; each key that stored in
    a commit is held to its cap in that same transaction. Expired rows are pruned by the writer
    every `PRUNE_EVERY` seconds, not on each save."""

    PRUNE_EVERY = 60.0

    def __init__(self, database: Database, config: ResponsesConfig) -> None:
        self._db = database
        self._config = config
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._pruned = time.monotonic()
        self._bytes = StoredBytes(database)

    def _cutoff(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) - dt.timedelta(days=self._config.retention_days)

    def fits(self, size_bytes: int) -> bool:
        """Whether a turn of this size may be stored at all (it is within the per-key cap)."""
        return size_bytes <= self._config.max_bytes_per_key

    async def save(self, owner: str, model: str, previous_id: str | None,
                   input_items: list[Any], response: dict[str, Any], *,
                   input_json: bytes | None = None, answer_json: bytes | None = None) -> bool:
        """Store a turn (its JSON may be given, already serialized); False if it is larger
        than the per-key cap, and nothing was stored."""
        items = orjson.dumps(input_items) if input_json is None else input_json
        answer = orjson.dumps(response) if answer_json is None else answer_json
        size = len(items) + len(answer)
        if not self.fits(size):
            logger.warning("responses: %s not stored: %d bytes, over the per-key cap of %d",
                           response["id"], size, self._config.max_bytes_per_key)
            return False
        row = {"id": response["id"], "key_id": owner, "model": model,
               "previous_id": previous_id, "created_at": dt.datetime.now(dt.UTC),
               "size_bytes": size, "input_items": items.decode(),
               "response": answer.decode()}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        await asyncio.shield(done)  # a cancelled request does not cancel the others' commit
        return True

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                # One executemany of plain rows (the ORM's unit of work cost as much again
                # as the whole request: `python -m bench routes`).
                async with self._db.engine.begin() as connection:
                    await connection.execute(insert(StoredResponse),
                                             [row for row, _ in batch])
                    await self._hold_to_cap(connection, [row for row, _ in batch])
            except Exception as exc:  # every waiter gets an answer, never a hang
                if not isinstance(exc, (SQLAlchemyError, OSError)):
                    logger.exception("responses: storing failed unexpectedly")
                logger.error("responses: could not store %d responses (%s)", len(batch),
                             type(exc).__name__)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(StoreUnavailable(
                            "The response could not be stored (the database is unavailable); "
                            "send it again, or with store: false."))
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
            if time.monotonic() - self._pruned > self.PRUNE_EVERY:
                await self.prune()

    async def prune(self) -> None:
        """Rows past retention go."""
        self._pruned = time.monotonic()
        cutoff = self._cutoff()
        try:
            async with self._db.engine.begin() as connection:
                gone = (await connection.execute(
                    select(StoredResponse.key_id, func.sum(StoredResponse.size_bytes))
                    .where(StoredResponse.created_at < cutoff)
                    .group_by(StoredResponse.key_id))).all()
                if gone:
                    await connection.execute(delete(StoredResponse).where(
                        StoredResponse.created_at < cutoff))
                    await self._bytes.subtract(connection, {key: int(size) for key, size in gone})
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("responses: pruning failed (%s); retried later", type(exc).__name__)

    async def _hold_to_cap(self, connection: AsyncConnection,
                           rows: list[dict[str, Any]]) -> None:
        """Count the rows just inserted; a key now over its cap loses its oldest rows until
        it is under (never its newest, which `fits` alone)."""
        added: dict[str, int] = {}
        newest: dict[str, str] = {}
        for row in rows:
            added[row["key_id"]] = added.get(row["key_id"], 0) + row["size_bytes"]
            newest[row["key_id"]] = row["id"]
        for owner, size in added.items():
            excess = await self._bytes.add(connection, owner, size) \
                - self._config.max_bytes_per_key
            if excess > 0:
                dropped = await self._drop_oldest(connection, owner, excess, newest[owner])
                await self._bytes.subtract(connection, {owner: dropped})

    @staticmethod
    async def _drop_oldest(connection: AsyncConnection, owner: str, excess: int,
                           keep: str) -> int:
        """Delete the key's oldest rows, a few at a time, until `excess` bytes are gone; the
        bytes deleted."""
        dropped = 0
        while dropped < excess:
            oldest = (await connection.execute(
                select(StoredResponse.id, StoredResponse.size_bytes)
                .where(StoredResponse.key_id == owner, StoredResponse.id != keep)
                .order_by(StoredResponse.created_at, StoredResponse.id).limit(16))).all()
            if not oldest:
                break
            doomed = []
            for row_id, size in oldest:
                if dropped >= excess:
                    break
                doomed.append(row_id)
                dropped += size
            await connection.execute(delete(StoredResponse).where(StoredResponse.id.in_(doomed)))
        return dropped

    async def get(self, owner: str, response_id: str) -> StoredTurn | None:
        async with self._db.sessions() as session:
            row = await session.get(StoredResponse, response_id)
        if row is None or row.key_id != owner or _aware(row.created_at) < self._cutoff():
            return None
        return StoredTurn(row.id, orjson.loads(row.input_items), orjson.loads(row.response))

    async def chain(self, owner: str, response_id: str) -> AsyncGenerator[StoredTurn, None]:
        """The conversation that ends with `response_id`, newest first, one row read at a time
        (at most `max_chain`); nothing if it is not this key's (or is gone). A link lost to
        retention ends the chain there. Close it (`contextlib.aclosing`) when leaving early."""
        next_id: str | None = response_id
        read = 0
        async with self._db.sessions() as session:
            while next_id is not None and read < self._config.max_chain:
                row = await session.get(StoredResponse, next_id)
                if row is None or row.key_id != owner or _aware(row.created_at) < self._cutoff():
                    return
                read += 1
                next_id = row.previous_id
                yield StoredTurn(row.id, orjson.loads(row.input_items),
                                 orjson.loads(row.response))

    async def conversation(self, owner: str, response_id: str) -> list[StoredTurn] | None:
        """The whole chain that ends with `response_id`, oldest first; None if it is not this
        key's (or is gone)."""
        turns = [turn async for turn in self.chain(owner, response_id)]
        turns.reverse()
        return turns or None

    async def delete(self, owner: str, response_id: str) -> bool:
        async with self._db.engine.begin() as connection:
            size = await connection.scalar(
                delete(StoredResponse)
                .where(StoredResponse.id == response_id, StoredResponse.key_id == owner)
                .returning(StoredResponse.size_bytes))
            if size is not None:
                await self._bytes.subtract(connection, {owner: size})
        return size is not None


def _aware(when: dt.datetime) -> dt.datetime:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
