"""Usage accounting: one row per request with real token counts, written off the request path,
and nothing lost when the database is down or the buffer overflows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from tests.conftest import GatewayFactory
from tests.support.servers import clean_env
from tram.store.db import Database, database_url
from tram.store.models import UsageEvent
from tram.store.usage import UsageWriter

USER = [{"role": "user", "content": "a prompt that must never be stored"}]


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite store in the test's folder."""
    store = Database(database_url(None, tmp_path))
    await store.migrate()
    yield store
    await store.aclose()


def test_one_row_per_request_with_engine_counts(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        key = httpx.post(url + "/admin/keys", headers=auth, json={"name": "u"}).json()
        as_key = {"Authorization": f"Bearer {key['key']}"}
        for _ in range(3):
            httpx.post(url + "/v1/chat/completions", headers=as_key,
                       json={"model": "qwen-text", "messages": USER})
        streamed = httpx.post(url + "/v1/chat/completions", headers=as_key,
                              json={"model": "m-stream", "messages": USER, "stream": True,
                                    "chunks": 4})
        httpx.post(url + "/v1/chat/completions", headers=as_key,
                   json={"model": "qwen-text", "messages": USER, "max_tokens": 0})
        by_key = httpx.get(url + "/admin/usage?by=key", headers=auth).json()["data"]
        by_model = {r["model"]: r for r in
                    httpx.get(url + "/admin/usage?by=model", headers=auth).json()["data"]}
        by_day = httpx.get(url + "/admin/usage?by=day&days=1", headers=auth).json()["data"]
        httpx.post(url + "/v1/chat/completions", headers=auth,  # the master key's request
                   json={"model": "qwen-text", "messages": USER})
        key_by_day = httpx.get(url + f"/admin/usage?by=day&key={key['id']}",
                               headers=auth).json()["data"]
        stream_only = httpx.get(url + "/admin/usage?by=key&model=m-stream",
                                headers=auth).json()["data"]
    # The client did not ask for usage: the engine's usage chunk was kept from it...
    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert all(orjson.loads(e)["choices"] for e in events[:-1]) and events[-1] == "[DONE]"
    # ...but counted.
    assert by_key == [{"key": key["id"], "requests": 5, "prompt_tokens": 3 * 7 + 7,
                       "completion_tokens": 3 * 2 + 4, "total_tokens": 38, "errors": 1,
                       "estimated_requests": 0, "error_rate": 0.2,
                       "name": key["name"], "owner": key["owner"]}]
    assert by_model["m-stream"]["completion_tokens"] == 4
    assert by_model["qwen-text"]["requests"] == 4
    assert by_day[0]["requests"] == 5
    assert [r["requests"] for r in key_by_day] == [5]  # the master key's sixth is not the key's
    assert [(r["key"], r["requests"], r["total_tokens"]) for r in stream_only] == [
        (key["id"], 1, 11)]


async def _count(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(UsageEvent)) or 0)


def _event(i: int) -> dict:
    return {"event_id": f"e{i}", "ts": "2026-01-01T00:00:00+00:00", "request_id": f"r{i}",
            "key_id": "k", "model": "m",
            "served_model": "s", "prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": None,
            "images": 0, "stream": False, "latency_ms": 1.0, "first_byte_ms": 1.0, "status": 200,
            "error_code": None, "client_disconnected": False}


def _down(*_: object) -> None:
    raise OperationalError("INSERT", {}, Exception("database is down (injected)"))


async def test_database_outage_keeps_memory_bounded_and_then_writes_everything(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = UsageWriter(database, tmp_path / "journal", batch_size=50, max_buffer=200)
    real_write = writer._write
    monkeypatch.setattr(writer, "_write", _down)
    started = time.perf_counter()
    for i in range(1000):
        writer.record(_event(i))  # the request path: never blocks, never fails
    assert time.perf_counter() - started < 0.5
    with pytest.raises(OperationalError):
        await writer.flush()
    # Memory is bounded; what left it waits in the journal, not lost.
    assert writer.pending() <= 200 and writer.shed > 0 and writer.lost == 0
    assert writer.pending() + writer.shed == 1000
    monkeypatch.setattr(writer, "_write", real_write)
    await writer.flush()  # the database is back: the retired journal is read back
    assert await _count(database) == 1000
    assert len(list((tmp_path / "journal").glob("usage-*.journal"))) == 1  # only the live one


async def test_shutdown_with_the_database_down_leaves_the_journal_for_the_next_start(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = UsageWriter(database, tmp_path / "journal", batch_size=50, max_buffer=20)
    monkeypatch.setattr(writer, "_write", _down)
    for i in range(30):
        writer.record(_event(i))  # past max_buffer: some are in the journal only
    await writer.close(deadline=1)
    assert writer.pending() == 0 and writer.lost == 0 and writer.shed > 0
    restarted = UsageWriter(database, tmp_path / "journal")
    assert await restarted.recover() == 30
    assert await _count(database) == 30
    assert not list((tmp_path / "journal").glob("usage-*"))
    rows = (tmp_path / "tram.db").read_bytes()
    assert b"a prompt that must never be stored" not in rows


async def _writer_in_a_write(database: Database, journal: Path, monkeypatch: pytest.MonkeyPatch,
                            batch_size: int, events: int) -> tuple[UsageWriter, asyncio.Event]:
    """A running writer, given `events`, that has begun writing a batch and waits there (a
    slow database) until the returned gate is opened; left shut, the database never answers."""
    writer = UsageWriter(database, journal, batch_size=batch_size)
    gate, started = asyncio.Event(), asyncio.Event()
    real_write = writer._write

    async def gated(batch: list) -> None:
        started.set()
        await gate.wait()
        await real_write(batch)

    monkeypatch.setattr(writer, "_write", gated)
    writer.start()
    for i in range(events):
        writer.record(_event(i))  # a full batch wakes the writer
    await asyncio.wait_for(started.wait(), 5)
    return writer, gate


async def test_a_flush_waits_for_the_batch_the_writer_is_writing(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """What /admin/usage relies on: after its flush, every answered request is stored, even
    the ones the background writer had taken but not yet committed."""
    writer, gate = await _writer_in_a_write(database, tmp_path / "journal", monkeypatch,
                                            batch_size=500, events=600)
    view = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.2)
    assert not view.done()  # waits for the writer's batch instead of racing it
    gate.set()
    await asyncio.wait_for(view, 5)
    assert await _count(database) == 600
    await writer.close()


async def test_shutdown_lets_the_write_in_progress_finish(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    writer, gate = await _writer_in_a_write(database, tmp_path / "journal", monkeypatch,
                                            batch_size=10, events=25)
    closing = asyncio.create_task(writer.close(deadline=5))
    await asyncio.sleep(0.2)
    gate.set()
    await closing
    assert await _count(database) == 25
    assert not list((tmp_path / "journal").glob("usage-*"))  # all stored: journal removed


async def test_a_write_that_hangs_at_shutdown_leaves_its_events_in_the_journal(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # The gate stays shut: the database does not answer.
    writer, _ = await _writer_in_a_write(database, tmp_path / "journal", monkeypatch,
                                         batch_size=10, events=25)
    started = time.monotonic()
    await writer.close(deadline=0.5)
    assert time.monotonic() - started < 3
    assert await UsageWriter(database, tmp_path / "journal").recover() == 25
    assert await _count(database) == 25


async def test_a_down_database_is_retried_with_backoff_not_once_per_request(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = UsageWriter(database, tmp_path / "journal", batch_size=10, flush_interval=0.05)
    real_write = writer._write
    attempts = 0

    async def down(events: list) -> None:
        nonlocal attempts
        attempts += 1
        _down()

    monkeypatch.setattr(writer, "_write", down)
    writer.start()
    for i in range(400):  # full batches keep arriving while the database is down
        writer.record(_event(i))
        await asyncio.sleep(0.001)
    # Backoff from 0.05 s doubling: a handful of attempts in ~0.5 s, not one per event.
    assert 1 <= attempts <= 8
    monkeypatch.setattr(writer, "_write", real_write)
    await writer.close(deadline=5)
    assert await _count(database) == 400


async def test_a_spill_file_from_an_older_version_is_stored_once(tmp_path: Path,
                                                              database: Database) -> None:
    (tmp_path / "usage-spill.jsonl").write_bytes(
        b"".join(orjson.dumps(_event(i)) + b"\n" for i in range(3)))
    writer = UsageWriter(database, tmp_path / "journal")
    assert await writer.recover() == 3
    assert await writer.recover() == 0
    assert await _count(database) == 3 and not (tmp_path / "usage-spill.jsonl").exists()


async def test_journal_rotation_keeps_in_flight_requests_and_replays_are_idempotent(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal is replaced once its events are stored, carrying the requests still in
    flight; recovering a journal whose events are already stored adds nothing twice."""
    from tram.requestlog import RequestRecord
    from tram.store.usage import spool

    dead = UsageWriter(database, tmp_path / "journal")
    records = [RequestRecord(f"r{i}", "POST", "/v1/chat/completions") for i in range(4)]
    for record in records:
        dead.begin(record, {"model": "qwen-text", "stream": False})
    for record in records[:2]:
        record.status = 200
        dead.record(record.as_usage())
    old = dead.journal.path  # type: ignore[union-attr]
    monkeypatch.setattr(spool, "_JOURNAL_ROTATE", 0)  # rotate at the next flush
    await dead.flush()
    assert not old.exists() and dead.journal.path.exists()  # type: ignore[union-attr]
    records[2].status = 200
    dead.record(records[2].as_usage())  # journaled, never flushed: then the process "dies"
    dead.journal._write(b"E{\"event_id\": \"cut")  # type: ignore[union-attr]  # a cut line
    dead.journal.close(remove=False)  # type: ignore[union-attr]  # the kernel drops the lock

    survivor = UsageWriter(database, tmp_path / "journal")
    assert await survivor.recover() == 2  # r2's event and r3 (in flight: interrupted)
    assert survivor.interrupted == 1
    assert await survivor.recover() == 0  # the journal is gone once stored
    async with database.sessions() as session:
        rows = {r.request_id: r for r in await session.scalars(select(UsageEvent))}
    assert sorted(rows) == ["r0", "r1", "r2", "r3"]
    assert rows["r3"].error_code == "gateway_interrupted" and rows["r3"].model == "qwen-text"
    assert rows["r2"].status == 200 and rows["r2"].error_code is None
    # Replaying events that are already stored (a crash after the commit) adds no row.
    await survivor._write([records[0].as_usage() | {"event_id": records[0].event_id}])
    assert await _count(database) == 4


async def test_retention_prunes_old_rows_in_batches(tmp_path: Path, database: Database) -> None:
    writer = UsageWriter(database, tmp_path / "journal")
    old = [_event(i) | {"ts": "2025-01-01T00:00:00+00:00"} for i in range(23)]
    recent = [_event(100 + i) | {"ts": "2026-11-01T00:00:00+00:00"} for i in range(5)]
    await writer._write(old + recent)
    import datetime as dt

    deleted = await writer.prune(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), batch=10, pause=0)
    assert deleted == 23
    assert await _count(database) == 5
    async with database.sessions() as session:  # stored as SQLAlchemy reads it back
        stamps = {r.ts for r in await session.scalars(select(UsageEvent))}
    assert stamps == {dt.datetime(2026, 11, 1)}  # UTC (SQLite keeps no zone)
    assert await writer.prune(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), batch=10) == 0


async def test_head_revision_constant_is_alembics_head(tmp_path: Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tram.store.db import HEAD_REVISION, MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
    database = Database(database_url(None, tmp_path))
    assert await database.schema_revision() is None
    await database.migrate()
    assert await database.schema_revision() == HEAD_REVISION
    await database.aclose()


async def test_no_journal_possible_still_records_usage(tmp_path: Path, database: Database,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from tram.requestlog import RequestRecord

    (tmp_path / "not-a-folder").write_text("")
    writer = UsageWriter(database, tmp_path / "not-a-folder")
    record = RequestRecord("r1", "POST", "/v1/chat/completions")
    writer.begin(record, {"model": "qwen-text"})  # the request path must not fail
    record.status = 200
    writer.record(record.as_usage())
    await writer.flush()
    assert await _count(database) == 1
    assert "running without one" in caplog.text


def test_tram_usage_counts_what_a_dead_gateway_left_in_its_journal(tmp_path: Path) -> None:
    """`tram usage` run after a gateway was killed (or stopped with the database down)
    reports the requests it answered without waiting for the next gateway to start."""
    import subprocess
    import sys

    async def die_with_events_unstored() -> None:
        database = Database(database_url(None, tmp_path))
        await database.migrate()
        dead = UsageWriter(database, tmp_path / "journal")
        for i in range(4):
            dead.record(_event(i) | {"key_id": "key_dead"})
        dead.journal.close(remove=False)  # type: ignore[union-attr]  # killed: no flush
        await database.aclose()

    asyncio.run(die_with_events_unstored())
    shown = subprocess.run([sys.executable, "-m", "tram", "usage", "--by", "key"],
                           env=clean_env(TRAM_DATA_DIR=str(tmp_path)), cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    # Columns: name, owner (none for a key the store does not know), key, requests, …
    assert any(line.split()[:4] == ["-", "-", "key_dead", "4"] for line in shown.splitlines()), \
        shown


async def test_a_writer_that_fails_on_a_bug_says_so_and_starts_again(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    writer = UsageWriter(database, tmp_path / "journal", flush_interval=0.05)
    real_write = writer._write

    async def buggy(events: list) -> None:
        raise ValueError("a bug (injected)")

    monkeypatch.setattr(writer, "_write", buggy)
    writer.start()
    writer.record(_event(1))
    deadline = time.monotonic() + 5
    while "writer stopped on an unexpected error" not in caplog.text:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    monkeypatch.setattr(writer, "_write", real_write)  # fixed: the restarted writer stores it
    deadline = time.monotonic() + 5
    while await _count(database) < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await writer.close()


async def test_steady_traffic_is_written_in_full_batches_not_chased_row_by_row(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events keep arriving while a batch is written: the writer must not chase them with
    batches of a few rows (each one a transaction), nor lose any."""
    writer = UsageWriter(database, tmp_path / "journal", batch_size=100, flush_interval=0.2)
    real_write = writer._write
    sizes: list[int] = []

    async def slow_write(events: list) -> None:
        sizes.append(len(events))
        await asyncio.sleep(0.005)  # a write takes a while; traffic goes on meanwhile
        await real_write(events)

    monkeypatch.setattr(writer, "_write", slow_write)
    writer.start()
    for i in range(600):  # ~1,000 requests/s for 0.6 s
        writer.record(_event(i))
        await asyncio.sleep(0.001)
    await writer.close()
    assert await _count(database) == 600
    assert len(sizes) <= 20, sizes  # chasing the buffer made one write per couple of events
