"""A batch's lines as a work queue shared by every gateway process: the only SQL that takes,
keeps and gives back lines.

The database is the coordinator. A process claims lines with one UPDATE … RETURNING over the
lines it picked: on PostgreSQL the pick locks its rows with `FOR UPDATE SKIP LOCKED`, so two
processes never claim the same line and neither waits for the other; SQLite has one writer at
a time, and a single statement that writes takes the write lock before it reads, so the same
holds. A claim is a lease (`claimed_by`, `lease_until`), renewed while the line runs; a line
whose lease has run out (its process died or lost the database) is put back to pending by
whichever process sweeps first (`reclaim`), its claim cleared. A line's
result is written together with its final state, and only by the process that holds it
(`finish` checks the claim), so a finished line is never claimed again and a line never has
two results. Times are epoch seconds of the gateway hosts' clocks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tram.store.db import Database
from tram.store.models import Batch, BatchLine

__all__ = ["ClaimedLine", "LineQueue", "Outcome"]

PENDING, RUNNING = "pending", "running"


@dataclass(frozen=True)
class ClaimedLine:
    id: int
    batch_id: str
    line: int
    custom_id: str
    route: str
    model: str
    body: str
    attempts: int  # claims of this line so far, this one included


@dataclass(frozen=True)
class Outcome:
    """A line's end: `succeeded` or `failed`, with its output or error file line."""

    state: str
    result: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _claimable(now: float) -> ColumnElement[bool]:
    # A line given back after its batch began cancelling (a retry, a lease that ran out) is
    # pending again, but its batch no longer runs lines: BatchStore.cancel_given_back ends it.
    running = select(Batch.id).where(Batch.status == "in_progress").scalar_subquery()
    return and_(BatchLine.state == PENDING,
                or_(BatchLine.not_before.is_(None), BatchLine.not_before <= now),
                BatchLine.batch_id.in_(running))


class LineQueue:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def models(self, now: float) -> set[str]:
        """The models that have lines to claim now."""
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(
                select(BatchLine.model).where(_claimable(now)).distinct())).all()
        return {row[0] for row in rows}

    async def reclaim(self, now: float) -> int:
        """Lines whose lease ran out go back to pending, their claim cleared: the process that
        held them is gone (or cut off), and will not be able to store a result for them."""
        async with self._db.engine.begin() as connection:
            result = await connection.execute(
                update(BatchLine).where(BatchLine.state == RUNNING, BatchLine.lease_until < now)
                .values(state=PENDING, claimed_by=None, lease_until=None))
        return int(result.rowcount)

    async def claim(self, worker: str, model: str, count: int, now: float,
                    lease: float) -> list[ClaimedLine]:
        """Up to `count` of the model's pending lines, oldest first, now this worker's."""
        picked = (select(BatchLine.id).where(BatchLine.model == model, _claimable(now))
                  .order_by(BatchLine.id).limit(count).with_for_update(skip_locked=True))
        claim = (update(BatchLine).where(BatchLine.id.in_(picked.scalar_subquery()))
                 .values(state=RUNNING, claimed_by=worker, lease_until=now + lease,
                         not_before=None, attempts=BatchLine.attempts + 1)
                 .returning(BatchLine.id, BatchLine.batch_id, BatchLine.line,
                            BatchLine.custom_id, BatchLine.route, BatchLine.model,
                            BatchLine.body, BatchLine.attempts)
                 .execution_options(synchronize_session=False))
        async with self._db.engine.begin() as connection:
            rows = (await connection.execute(claim)).all()
        return sorted((ClaimedLine(row.id, row.batch_id, row.line, row.custom_id or "",
                                   row.route, row.model, row.body or "{}", row.attempts)
                       for row in rows), key=lambda line: line.id)

    async def renew(self, worker: str, now: float, lease: float) -> int:
        """Every line this worker runs is its own for another `lease` seconds."""
        async with self._db.engine.begin() as connection:
            result = await connection.execute(
                update(BatchLine).where(BatchLine.claimed_by == worker,
                                        BatchLine.state == RUNNING)
                .values(lease_until=now + lease))
        return int(result.rowcount)

    async def finish(self, line_id: int, worker: str, outcome: Outcome) -> bool | None:
        """The line's result and final state, in one statement, if the line is still this
        worker's: then whether its batch still has a line pending or running (read in the same
        transaction); None if it is not (its lease ran out and it went to another process)."""
        async with self._db.engine.begin() as connection:
            result = await connection.execute(
                update(BatchLine).where(BatchLine.id == line_id, BatchLine.claimed_by == worker,
                                        BatchLine.state == RUNNING)
                .values(state=outcome.state, result=outcome.result, claimed_by=None,
                        lease_until=None, prompt_tokens=outcome.prompt_tokens,
                        completion_tokens=outcome.completion_tokens,
                        finished_at=dt.datetime.now(dt.UTC))
                .returning(BatchLine.batch_id))
            batch_id = result.scalar()
            if batch_id is None:
                return None
            return await self._unfinished(connection, batch_id)

    @staticmethod
    async def _unfinished(connection: AsyncConnection, batch_id: str) -> bool:
        found = await connection.scalar(
            select(BatchLine.id).where(BatchLine.batch_id == batch_id,
                                       BatchLine.state.in_((PENDING, RUNNING))).limit(1))
        return found is not None

    async def release(self, worker: str, line_ids: list[int] | None = None,
                      not_before: float | None = None) -> int:
        """Give lines back unrun (all of this worker's when `line_ids` is None): claimable
        again from `not_before`, and the claim not counted as an attempt."""
        where = [BatchLine.claimed_by == worker, BatchLine.state == RUNNING]
        if line_ids is not None:
            where.append(BatchLine.id.in_(line_ids))
        async with self._db.engine.begin() as connection:
            result = await connection.execute(
                update(BatchLine).where(*where)
                .values(state=PENDING, claimed_by=None, lease_until=None,
                        not_before=not_before, attempts=BatchLine.attempts - 1))
        return int(result.rowcount)

    async def owner(self, batch_id: str) -> str | None:
        """The key that made the batch (its lines run as that key)."""
        async with self._db.engine.connect() as connection:
            found = await connection.scalar(select(Batch.key_id).where(Batch.id == batch_id))
        return str(found) if found is not None else None

    async def unfinished(self, batch_id: str) -> bool:
        """Whether a line of the batch is still pending or running (one index probe)."""
        async with self._db.engine.connect() as connection:
            return await self._unfinished(connection, batch_id)
