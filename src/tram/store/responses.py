"""Stored responses: what `/v1/responses` keeps for `previous_response_id`, GET and DELETE.

Engines do not keep conversations across replicas or restarts (vLLM's store is in one
process's memory, llama.cpp has none), so the gateway keeps them in its own database, shared by
every gateway process. A row holds one request's own input items and its answer; a
conversation is its chain of rows, followed through `previous_id`. Every row belongs to the key
that made it: another key reading, deleting or continuing it gets a 404, as for an id that
does not exist. Rows older than `retention_days` are gone, and a key past `max_bytes_per_key`
loses its oldest rows first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, select

from tram.config import ResponsesConfig
from tram.store.db import Database
from tram.store.models import StoredResponse

__all__ = ["ResponseStore", "StoredTurn"]


@dataclass(frozen=True)
class StoredTurn:
    id: str
    input_items: list[Any]
    response: dict[str, Any]


class ResponseStore:
    def __init__(self, database: Database, config: ResponsesConfig) -> None:
        self._db = database
        self._config = config

    def _cutoff(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) - dt.timedelta(days=self._config.retention_days)

    async def save(self, owner: str, model: str, previous_id: str | None,
                   input_items: list[Any], response: dict[str, Any]) -> None:
        items = orjson.dumps(input_items).decode()
        answer = orjson.dumps(response).decode()
        size = len(items) + len(answer)
        async with self._db.sessions.begin() as session:
            session.add(StoredResponse(
                id=response["id"], key_id=owner, model=model, previous_id=previous_id,
                created_at=dt.datetime.now(dt.UTC), size_bytes=size, input_items=items,
                response=answer))
            await session.flush()
            await session.execute(delete(StoredResponse).where(
                StoredResponse.key_id == owner, StoredResponse.created_at < self._cutoff()))
            total = await session.scalar(select(func.sum(StoredResponse.size_bytes)).where(
                StoredResponse.key_id == owner))
            if total is not None and total > self._config.max_bytes_per_key:
                await self._drop_oldest(session, owner, int(total))

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
