"""Batches (`/v1/batches`): the only SQL about a batch as a whole — made with all its lines in
one transaction, read with its counts, cancelled, expired, and finished.

A batch is finished in one transaction that checks it still has no line pending or running,
writes its output and error files from its lines' results, and sets its final status: a batch
is never completed without its files, and two processes finishing it at once write them once
(the first statement takes the batch row, and the second finds it finished).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tram.store.db import Database
from tram.store.files import FileStore, file_row
from tram.store.models import Batch, BatchLine

__all__ = ["ACTIVE", "BatchStore", "Counts", "NewLine"]

# A batch whose lines still run (or wait to be finished).
ACTIVE = ("in_progress", "cancelling")
_UNFINISHED = ("pending", "running")
_CHUNK = 1000  # lines per INSERT


@dataclass(frozen=True)
class NewLine:
    line: int
    custom_id: str | None
    model: str
    body: str | None  # the request's JSON; None for a line that cannot run
    result: str | None = None  # a line that cannot run: its error file line


@dataclass
class Counts:
    total: int = 0
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


# What a line that never ran says in the error file: (custom_id, its state) → its JSON line.
Describe = Callable[[str | None, str], str]


class BatchStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, batch: dict[str, Any], lines: list[NewLine],
                     error_file: dict[str, Any] | None = None) -> None:
        """The batch and every line at once (a failed batch comes with its error file)."""
        route = batch["route"]
        row = {name: value for name, value in batch.items() if name != "route"}
        async with self._db.engine.begin() as connection:
            await connection.execute(insert(Batch), row)
            for start in range(0, len(lines), _CHUNK):
                await connection.execute(insert(BatchLine), [
                    {"batch_id": batch["id"], "line": line.line, "custom_id": line.custom_id,
                     "route": route, "model": line.model, "body": line.body,
                     "state": "pending" if line.result is None else "failed",
                     "result": line.result, "attempts": 0}
                    for line in lines[start:start + _CHUNK]])
            if error_file is not None:
                await FileStore.insert(connection, error_file)

    async def get(self, batch_id: str, owner: str | None) -> Batch | None:
        """The batch, if `owner` made it (None: whoever did)."""
        async with self._db.sessions() as session:
            found = await session.get(Batch, batch_id)
        return found if found is not None and owner in (None, found.key_id) else None

    async def page(self, owner: str | None, after: str | None = None, limit: int = 20,
                   status: str | None = None) -> list[Batch]:
        """Newest first; `after` a batch id of the previous page."""
        query = select(Batch)
        if owner is not None:
            query = query.where(Batch.key_id == owner)
        if status is not None:
            query = query.where(Batch.status == status)
        async with self._db.sessions() as session:
            if after is not None:
                anchor = await session.get(Batch, after)
                if anchor is None or owner not in (None, anchor.key_id):
                    return []
                query = query.where((Batch.created_at < anchor.created_at) | (
                    (Batch.created_at == anchor.created_at) & (Batch.id < after)))
            found = await session.scalars(
                query.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit))
            return list(found)

    async def counts(self, batch_ids: Iterable[str]) -> dict[str, Counts]:
        wanted = list(batch_ids)
        counts = {batch_id: Counts() for batch_id in wanted}
        if not wanted:
            return counts
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(
                select(BatchLine.batch_id, BatchLine.state, func.count(),
                       func.sum(BatchLine.prompt_tokens), func.sum(BatchLine.completion_tokens))
                .where(BatchLine.batch_id.in_(wanted))
                .group_by(BatchLine.batch_id, BatchLine.state))).all()
        for batch_id, state, number, prompt, completion in rows:
            count = counts[batch_id]
            count.by_state[state] = int(number)
            count.total += int(number)
            if state == "succeeded":
                count.completed += int(number)
            elif state not in _UNFINISHED:
                count.failed += int(number)  # failed, or never run: cancelled, expired
            count.prompt_tokens += int(prompt or 0)
            count.completion_tokens += int(completion or 0)
        return counts

    async def cancel(self, batch_id: str, owner: str) -> bool:
        """An active batch of `owner` starts cancelling: its pending lines will not run.
        False if there is no such batch or it is not active."""
        now = dt.datetime.now(dt.UTC)
        async with self._db.engine.begin() as connection:
            changed = await connection.execute(
                update(Batch).where(Batch.id == batch_id, Batch.key_id == owner,
                                    Batch.status == "in_progress")
                .values(status="cancelling", cancelling_at=now))
            if not changed.rowcount:
                return False
            await connection.execute(
                update(BatchLine).where(BatchLine.batch_id == batch_id,
                                        BatchLine.state == "pending")
                .values(state="cancelled", finished_at=now))
        return True

    async def any_active(self) -> bool:
        """Whether a batch is still active; with none, no line is pending or running either
        (a batch is finished only when none is)."""
        async with self._db.engine.connect() as connection:
            found = await connection.execute(
                select(Batch.id).where(Batch.status.in_(ACTIVE)).limit(1))
            return found.first() is not None

    async def expire(self, now: dt.datetime) -> int:
        """Lines still waiting in batches past their completion window will not run."""
        return await self._end_pending(
            (Batch.status == "in_progress", Batch.expires_at < now), "expired", now)

    async def cancel_given_back(self, now: dt.datetime) -> int:
        """Lines pending in a cancelling batch (given back after the cancel: a retry, a lease
        that ran out) will not run either."""
        return await self._end_pending((Batch.status == "cancelling",), "cancelled", now)

    async def _end_pending(self, batches: tuple[ColumnElement[bool], ...], state: str,
                           now: dt.datetime) -> int:
        """The pending lines of the batches matching `batches` end in `state`, unrun."""
        chosen = select(Batch.id).where(*batches).scalar_subquery()
        async with self._db.engine.begin() as connection:
            result = await connection.execute(
                update(BatchLine).where(BatchLine.state == "pending",
                                        BatchLine.batch_id.in_(chosen))
                .values(state=state, finished_at=now)
                .execution_options(synchronize_session=False))
        return int(result.rowcount)

    async def finishable(self) -> list[str]:
        """Active batches with no line pending or running: ready to be finished."""
        busy = exists().where(BatchLine.batch_id == Batch.id, BatchLine.state.in_(_UNFINISHED))
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(
                select(Batch.id).where(Batch.status.in_(ACTIVE), ~busy))).all()
        return [row[0] for row in rows]

    async def finish(self, batch_id: str, describe: Describe) -> str | None:
        """Write the batch's files and its final status; the status, or None when it is not
        finished here (another process did it, or a line is still pending or running)."""
        try:
            async with self._db.engine.begin() as connection:
                return await self._finish(connection, batch_id, describe)
        except _NotYet:
            return None

    async def _finish(self, connection: AsyncConnection, batch_id: str,
                      describe: Describe) -> str:
        now = dt.datetime.now(dt.UTC)
        # The batch row first: on PostgreSQL it stays locked until this commits, on SQLite
        # this takes the write lock; a second process finishing the batch finds it done.
        taken = (await connection.execute(
            update(Batch).where(Batch.id == batch_id, Batch.status.in_(ACTIVE))
            .values(finalizing_at=func.coalesce(Batch.finalizing_at, now))
            .returning(Batch.status, Batch.key_id))).first()
        if taken is None:
            raise _NotYet
        unfinished = await connection.scalar(select(func.count()).where(
            BatchLine.batch_id == batch_id, BatchLine.state.in_(_UNFINISHED)))
        if unfinished:
            raise _NotYet
        lines = (await connection.execute(
            select(BatchLine.custom_id, BatchLine.state, BatchLine.result)
            .where(BatchLine.batch_id == batch_id).order_by(BatchLine.line))).all()
        output = [row.result for row in lines if row.state == "succeeded"]
        errors = [row.result if row.result is not None else describe(row.custom_id, row.state)
                  for row in lines if row.state != "succeeded"]
        status = "cancelled" if taken.status == "cancelling" else \
            "expired" if any(row.state == "expired" for row in lines) else "completed"
        values: dict[str, Any] = {"status": status, f"{status}_at": now}
        for kind, chosen in (("output", output), ("error", errors)):
            if chosen:
                row = file_row(taken.key_id, f"{batch_id}_{kind}.jsonl", "batch_output",
                               ("\n".join(chosen) + "\n").encode())
                await FileStore.insert(connection, row)
                values[f"{kind}_file_id"] = row["id"]
        await connection.execute(update(Batch).where(Batch.id == batch_id).values(**values))
        return status


class _NotYet(Exception):
    """The batch is not to be finished in this transaction (rolled back)."""
