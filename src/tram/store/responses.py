"""Stored responses: what `/v1/responses` keeps for `previous_response_id`, GET and DELETE.

Engines do not keep conversations across replicas or restarts (vLLM's store is in one
process's memory, llama.cpp has none), so the gateway keeps them in its own database, shared by
every gateway process. A row holds one request's own input items and its answer; a
conversation is its chain of rows, followed through `previous_id`. Every row belongs to the key
that made it: another key reading, deleting or continuing it gets a 404, as for an id that
does not exist. Rows older than `retention_days` are not served and are deleted, and a key past
`max_bytes_per_key` loses its oldest rows first (checked every minute, so a key may run over
its cap by what it stores in that minute).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from tram.config import ResponsesConfig
from tram.errors import StoreUnavailable
from tram.store.db import Database
from tram.store.models import StoredResponse

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
    instead of queueing on SQLite's write lock one busy-wait at a time. Expired rows and keys
    over their cap are pruned by the writer every `PRUNE_EVERY` seconds, not on each save."""

    PRUNE_EVERY = 60.0

    def __init__(self, database: Database, config: ResponsesConfig) -> None:
        self._db = database
        self._config = config
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._grown: set[str] = set()  # keys that stored since the last prune
        self._pruned = time.monotonic()

    def _cutoff(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) - dt.timedelta(days=self._config.retention_days)

    async def save(self, owner: str, model: str, previous_id: str | None,
                   input_items: list[Any], response: dict[str, Any]) -> None:
        items = orjson.dumps(input_items).decode()
        answer = orjson.dumps(response).decode()
        row = {"id": response["id"], "key_id": owner, "model": model,
               "previous_id": previous_id, "created_at": dt.datetime.now(dt.UTC),
               "size_bytes": len(items) + len(answer), "input_items": items,
               "response": answer}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        await asyncio.shield(done)  # a cancelled request does not cancel the others' commit

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                # One executemany of plain rows (the ORM's unit of work cost as much again
                # as the whole request: `python -m bench routes`).
                async with self._db.engine.begin() as connection:
                    await connection.execute(insert(StoredResponse),
                                             [row for row, _ in batch])
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
            for row, done in batch:
                self._grown.add(row["key_id"])
                if not done.done():
                    done.set_result(None)
            if time.monotonic() - self._pruned > self.PRUNE_EVERY:
                await self.prune()

    async def prune(self) -> None:
        """Rows past retention go; keys over their cap lose their oldest rows."""
        self._pruned = time.monotonic()
        grown, self._grown = self._grown, set()
        try:
            async with self._db.sessions.begin() as session:
                await session.execute(delete(StoredResponse).where(
                    StoredResponse.created_at < self._cutoff()))
                for owner in grown:
                    total = await session.scalar(select(func.sum(StoredResponse.size_bytes))
                                                 .where(StoredResponse.key_id == owner))
                    if total is not None and total > self._config.max_bytes_per_key:
                        await self._drop_oldest(session, owner, int(total))
        except (SQLAlchemyError, OSError) as exc:
            self._grown |= grown
            logger.warning("responses: pruning failed (%s); retried later", type(exc).__name__)

    async def _drop_oldest(self, session: Any, owner: str, total: int) -> None:
        """The key is over its cap: its oldest rows go until it is under (never the newest)."""
        rows = await session.execute(
            select(StoredResponse.id, StoredResponse.size_bytes)
            .where(StoredResponse.key_id == owner)
            .order_by(StoredResponse.created_at, StoredResponse.id))
        doomed: list[str] = []
        listed = list(rows)
        for row_id, size in listed[:-1]:
            if total <= self._config.max_bytes_per_key:
                break
            doomed.append(row_id)
            total -= size
        if doomed:
            await session.execute(delete(StoredResponse).where(StoredResponse.id.in_(doomed)))

    async def get(self, owner: str, response_id: str) -> StoredTurn | None:
        async with self._db.sessions() as session:
            row = await session.get(StoredResponse, response_id)
        if row is None or row.key_id != owner or _aware(row.created_at) < self._cutoff():
            return None
        return StoredTurn(row.id, orjson.loads(row.input_items), orjson.loads(row.response))

    async def conversation(self, owner: str, response_id: str) -> list[StoredTurn] | None:
        """The chain that ends with `response_id`, oldest first; None if it is not this key's
        (or is gone). A link lost to retention ends the chain there."""
        turns: list[StoredTurn] = []
        next_id: str | None = response_id
        async with self._db.sessions() as session:
            while next_id is not None and len(turns) < self._config.max_chain:
                row = await session.get(StoredResponse, next_id)
                if row is None or row.key_id != owner or _aware(row.created_at) < self._cutoff():
                    if not turns:
                        return None
                    break
                turns.append(StoredTurn(row.id, orjson.loads(row.input_items),
                                        orjson.loads(row.response)))
                next_id = row.previous_id
        turns.reverse()
        return turns

    async def delete(self, owner: str, response_id: str) -> bool:
        async with self._db.sessions.begin() as session:
            result = await session.execute(delete(StoredResponse).where(
                StoredResponse.id == response_id, StoredResponse.key_id == owner))
        return bool(getattr(result, "rowcount", 0))


def _aware(when: dt.datetime) -> dt.datetime:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
