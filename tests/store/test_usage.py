"""Usage accounting: one row per request with real token counts, written off the request path,
and nothing lost when the database is down or the buffer overflows."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from tests.conftest import GatewayFactory
from tram.store.db import Database, database_url
from tram.store.models import UsageEvent
from tram.store.usage import UsageWriter

USER = [{"role": "user", "content": "a prompt that must never be stored"}]


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
    # The client did not ask for usage: the engine's usage chunk was kept from it...
    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert all(orjson.loads(e)["choices"] for e in events[:-1]) and events[-1] == "[DONE]"
    # ...but counted.
    assert by_key == [{"key": key["id"], "requests": 5, "prompt_tokens": 3 * 7 + 7,
                       "completion_tokens": 3 * 2 + 4, "total_tokens": 38, "errors": 1}]
    assert by_model["m-stream"]["completion_tokens"] == 4
    assert by_model["qwen-text"]["requests"] == 4
    assert by_day[0]["requests"] == 5


async def _count(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(UsageEvent)) or 0)


def _event(i: int) -> dict:
    return {"ts": "2026-01-01T00:00:00+00:00", "request_id": f"r{i}", "key_id": "k", "model": "m",
            "served_model": "s", "prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": None,
            "images": 0, "stream": False, "latency_ms": 1.0, "first_byte_ms": 1.0, "status": 200,
            "error_code": None, "client_disconnected": False}


async def test_database_outage_buffers_spills_and_then_writes_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = Database(database_url(None, tmp_path))
    await database.migrate()
    writer = UsageWriter(database, tmp_path / "spill.jsonl", batch_size=50, max_buffer=200)
    real_write = writer._write

    async def down(events: list) -> None:
        raise OperationalError("INSERT", {}, Exception("database is down (injected)"))

    monkeypatch.setattr(writer, "_write", down)
    started = time.perf_counter()
    for i in range(1000):
        writer.record(_event(i))  # the request path: never blocks, never fails
    assert time.perf_counter() - started < 0.5
    with pytest.raises(OperationalError):
        await writer.flush()
    assert writer.spilled > 0 and list(tmp_path.glob("spill.*"))
    assert writer.pending() + writer.spilled == 1000
    monkeypatch.setattr(writer, "_write", real_write)
    await writer.flush()  # the database is back: spill replayed, buffer written
    assert await _count(database) == 1000
    assert not list(tmp_path.glob("spill.*"))
    await database.aclose()


async def test_shutdown_with_the_database_down_spills_and_the_next_start_replays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = Database(database_url(None, tmp_path))
    await database.migrate()
    writer = UsageWriter(database, tmp_path / "spill.jsonl")

    async def down(events: list) -> None:
        raise OperationalError("INSERT", {}, Exception("injected"))

    monkeypatch.setattr(writer, "_write", down)
    for i in range(30):
        writer.record(_event(i))
    await writer.close(deadline=1)
    assert writer.pending() == 0 and writer.spilled == 30
    restarted = UsageWriter(database, tmp_path / "spill.jsonl")
    await restarted.flush()
    assert await _count(database) == 30
    rows = (tmp_path / "tram.db").read_bytes()
    assert b"a prompt that must never be stored" not in rows
    await database.aclose()
