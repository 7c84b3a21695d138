"""Batches in the store, on SQLite and on a real PostgreSQL: the schema migration 0009 makes is
the models' own; lines claimed by several processes at once are never claimed twice; a lease
that runs out passes the line to another process and the first one's result is refused; a
batch is finished (its files written) once, however many processes try."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from sqlalchemy import func, select

from tram.batches.shapes import unrun_line
from tram.store.batch_lines import LineQueue, Outcome
from tram.store.batches import BatchStore, NewLine
from tram.store.db import Database
from tram.store.models import Base, StoredFile


@pytest.fixture
async def databases(url: str) -> AsyncIterator[list[Database]]:
    """Four connections pools to one store, as four gateway processes would have."""
    opened = [Database(url) for _ in range(4)]
    await opened[0].migrate()
    try:
        yield opened
    finally:
        for database in opened:
            await database.aclose()


async def _batch(database: Database, lines: int, batch_id: str = "batch_t") -> None:
    now = dt.datetime.now(dt.UTC)
    await BatchStore(database).create(
        {"id": batch_id, "key_id": "k", "endpoint": "/v1/chat/completions", "route": "chat",
         "input_file_id": "file-x", "completion_window": "24h", "status": "in_progress",
         "model": "m", "total": lines, "created_at": now,
         "expires_at": now + dt.timedelta(hours=24), "in_progress_at": now},
        [NewLine(n, f"c{n}", "m", "{}") for n in range(1, lines + 1)])


async def test_the_migrated_schema_is_the_models(databases: list[Database]) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def differences(connection: object) -> list[object]:
        context = MigrationContext.configure(connection)  # type: ignore[arg-type]
        return [diff for diff in compare_metadata(context, Base.metadata)
                if any(name in str(diff) for name in ("files", "batches", "batch_lines"))]

    async with databases[0].engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_lines_claimed_at_once_by_four_processes_are_each_claimed_once(
        databases: list[Database]) -> None:
    await _batch(databases[0], 200)
    claimed: list[list[int]] = [[] for _ in databases]

    async def work(index: int) -> None:
        queue = LineQueue(databases[index])
        while lines := await queue.claim(f"w{index}", "m", 7, time.time(), 30):
            claimed[index] += [line.id for line in lines]
            await asyncio.sleep(0)

    await asyncio.gather(*(work(i) for i in range(len(databases))))
    every = [line for lines in claimed for line in lines]
    assert len(every) == len(set(every)) == 200
    assert sum(1 for lines in claimed if lines) >= 2  # they did share the work


async def test_a_lease_that_ran_out_passes_the_line_on(databases: list[Database]) -> None:
    await _batch(databases[0], 1)
    first, second = LineQueue(databases[0]), LineQueue(databases[1])
    now = time.time()
    [line] = await first.claim("dead", "m", 5, now, lease=2)
    assert await second.reclaim(now + 1) == 0  # still leased
    assert await second.claim("live", "m", 5, now + 1, lease=2) == []
    assert await second.models(now + 1) == set()
    assert await second.reclaim(now + 3) == 1  # its lease ran out: back to pending
    assert await second.models(now + 3) == {"m"}
    [taken] = await second.claim("live", "m", 5, now + 3, lease=2)
    assert (taken.id, taken.attempts) == (line.id, 2)
    # The first process's result is refused (None); the second's is stored, and it is told
    # its batch has nothing left to run (False).
    assert await first.finish(line.id, "dead", Outcome("succeeded", "{\"late\":1}")) is None
    assert await second.finish(line.id, "live", Outcome("succeeded", "{\"kept\":1}")) is False
    assert await second.claim("other", "m", 5, now + 100, lease=2) == []  # done for good
    assert await first.release("dead") == 0


async def test_a_released_line_waits_its_time_and_is_not_counted_as_an_attempt(
        databases: list[Database]) -> None:
    await _batch(databases[0], 1)
    queue = LineQueue(databases[0])
    now = time.time()
    [line] = await queue.claim("w", "m", 1, now, 30)
    assert await queue.release("w", [line.id], not_before=now + 10) == 1
    assert await queue.claim("w", "m", 1, now + 5, 30) == []
    [again] = await queue.claim("w", "m", 1, now + 11, 30)
    assert again.attempts == 1


async def test_a_batch_is_finished_once_with_its_files(databases: list[Database]) -> None:
    await _batch(databases[0], 3)
    queue = LineQueue(databases[0])
    lines = await queue.claim("w", "m", 2, time.time(), 30)
    assert await BatchStore(databases[0]).finish("batch_t", unrun_line) is None  # not yet
    more = [await queue.finish(line.id, "w", Outcome("succeeded", f'{{"n":{line.line}}}'))
            for line in lines]
    assert more == [True, True]  # the third line is still pending
    assert await BatchStore(databases[0]).cancel("batch_t", "k")
    results = await asyncio.gather(*(BatchStore(db).finish("batch_t", unrun_line)
                                     for db in databases))
    assert results.count("cancelled") == 1 and results.count(None) == 3
    async with databases[0].engine.connect() as connection:
        files = await connection.scalar(select(func.count()).select_from(StoredFile))
    assert files == 2  # one output file, one error file
    batch = await BatchStore(databases[0]).get("batch_t", "k")
    assert batch is not None and batch.status == "cancelled"
    assert batch.output_file_id and batch.error_file_id and batch.cancelled_at


async def test_a_batch_past_its_window_expires_with_its_unrun_lines_in_its_error_file(
        databases: list[Database]) -> None:
    await _batch(databases[0], 3)
    queue, store = LineQueue(databases[0]), BatchStore(databases[0])
    [ran] = await queue.claim("w", "m", 1, time.time(), 30)
    assert await queue.finish(ran.id, "w", Outcome("succeeded", '{"n":1}')) is True
    assert await store.expire(dt.datetime.now(dt.UTC)) == 0  # within its 24 h
    assert await store.expire(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)) == 2
    assert await store.finishable() == ["batch_t"]
    assert await store.finish("batch_t", unrun_line) == "expired"
    batch = await store.get("batch_t", "k")
    assert batch is not None and batch.expired_at and batch.output_file_id
    async with databases[0].engine.connect() as connection:
        errors = await connection.scalar(select(StoredFile.content).where(
            StoredFile.id == batch.error_file_id))
    lines = [orjson.loads(line) for line in bytes(errors).splitlines()]
    assert [(line["custom_id"], line["error"]["code"]) for line in lines] == [
        ("c2", "batch_expired"), ("c3", "batch_expired")]
    counts = (await store.counts(["batch_t"]))["batch_t"]
    assert (counts.total, counts.completed, counts.failed) == (3, 1, 2)


async def test_a_line_given_back_after_its_batch_was_cancelled_does_not_run(
        databases: list[Database]) -> None:
    await _batch(databases[0], 3)
    queue, store = LineQueue(databases[0]), BatchStore(databases[0])
    now = time.time()
    running = await queue.claim("w", "m", 2, now, lease=30)
    assert await store.cancel("batch_t", "k")  # the third line, pending, is cancelled now
    assert await queue.release("w", [running[0].id]) == 1  # a retry gives one back
    assert await queue.reclaim(now + 60) == 1  # the other one's lease ran out
    # Pending again, but their batch runs no more lines: nobody claims them...
    assert await queue.models(now + 61) == set()
    assert await queue.claim("w2", "m", 5, now + 61, lease=30) == []
    # ...the sweep ends them, and the batch finishes as cancelled.
    assert await store.finishable() == []
    assert await store.cancel_given_back(dt.datetime.now(dt.UTC)) == 2
    assert await store.finishable() == ["batch_t"]
    assert await store.finish("batch_t", unrun_line) == "cancelled"
