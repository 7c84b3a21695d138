"""The same store on a real PostgreSQL server, including an outage under load: requests keep
being served, and afterwards there is exactly one usage row per request."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import MASTER_KEY, fault_models
from tests.support.fault_engine import EngineLog
from tests.support.postgres import Postgres
from tests.support.servers import serve_app
from tram.app import create_app
from tram.config import Settings, parse_config

USER = [{"role": "user", "content": "hi"}]
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}



def pg_gateway(tmp_path: Path, postgres: Postgres, engine_url: str):  # type: ignore[no-untyped-def]
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None,
                        database_url=postgres.url, data_dir=tmp_path / "data")
    return serve_app(create_app(settings, parse_config({"models": fault_models(engine_url)}, "t")))


def test_keys_limits_and_usage_on_postgres(tmp_path: Path, postgres: Postgres,
                                           fault_engine_server: tuple[str, EngineLog]) -> None:
    with pg_gateway(tmp_path, postgres, fault_engine_server[0]) as url:
        made = httpx.post(url + "/admin/keys", headers=AUTH,
                          json={"name": "pg", "models": ["qwen-text"], "rpm": 2}).json()
        headers = {"Authorization": f"Bearer {made['key']}"}
        statuses = [httpx.post(url + "/v1/chat/completions", headers=headers,
                               json={"model": "qwen-text", "messages": USER}).status_code
                    for _ in range(3)]
        usage = httpx.get(url + "/admin/usage?by=key", headers=AUTH).json()["data"]
        httpx.delete(url + f"/admin/keys/{made['id']}", headers=AUTH)
        revoked = httpx.get(url + "/v1/models", headers=headers)
    assert statuses == [200, 200, 429]
    row = next(r for r in usage if r["key"] == made["id"])
    assert row["requests"] == 3 and row["prompt_tokens"] == 14 and row["errors"] == 1
    assert revoked.status_code == 401


def test_database_outage_under_load_loses_no_usage_and_fails_no_request(
        tmp_path: Path, postgres: Postgres, fault_engine_server: tuple[str, EngineLog]) -> None:
    with pg_gateway(tmp_path, postgres, fault_engine_server[0]) as url:
        key = httpx.post(url + "/admin/keys", headers=AUTH, json={"name": "load"}).json()
        as_key = {"Authorization": f"Bearer {key['key']}"}
        before = sum(r["requests"] for r in
                     httpx.get(url + "/admin/usage?by=key", headers=AUTH).json()["data"])
        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    for headers in (AUTH, as_key):
                        statuses.append(client.post(url + "/v1/chat/completions",
                                                    headers=headers, json={
                                                        "model": "qwen-text",
                                                        "messages": USER}).status_code)

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(1.0)
        postgres.stop()
        time.sleep(2.0)  # requests keep coming while the database is down
        postgres.start()
        time.sleep(1.0)
        stop.set()
        loader.join(30)
        deadline = time.monotonic() + 30
        while True:  # the writer retries with backoff; the view flushes what is buffered
            response = httpx.get(url + "/admin/usage?by=key", headers=AUTH)
            if response.status_code == 200:
                break
            assert time.monotonic() < deadline
            time.sleep(0.5)
        after = sum(r["requests"] for r in response.json()["data"])
    assert set(statuses) == {200}
    assert len(statuses) > 20
    assert after - before == len(statuses)


async def test_stored_responses_hold_their_cap_on_postgres(tmp_path: Path,
                                                           postgres: Postgres) -> None:
    """The per-key total the cap is held to (an upsert with RETURNING, a DELETE … RETURNING)
    in PostgreSQL's dialect, with concurrent saves of one key sharing commits."""
    from sqlalchemy import func, select

    from tram.config import ResponsesConfig
    from tram.store.db import Database, database_url
    from tram.store.models import StoredResponse, StoredResponseTotal
    from tram.store.stored_responses import ResponseStore

    database = Database(database_url(postgres.url, tmp_path))
    await database.migrate()
    store = ResponseStore(database, ResponsesConfig(max_bytes_per_key=4000))
    owner = "key_pg_cap"

    def answer(rid: str, text: str) -> dict:
        return {"id": rid, "object": "response", "status": "completed", "output": text}

    async def stored() -> tuple[int, int]:
        async with database.sessions() as session:
            summed = await session.scalar(select(func.sum(StoredResponse.size_bytes))
                                          .where(StoredResponse.key_id == owner))
            total = await session.get(StoredResponseTotal, owner)
        return int(summed or 0), total.size_bytes if total is not None else 0

    try:
        await asyncio.gather(*(store.save(owner, "m", None, [], answer(f"resp_pg_{n}", "y" * 200))
                               for n in range(40)))
        summed, total = await stored()
        assert summed == total and 3000 < total <= 4000
        assert await store.delete(owner, "resp_pg_39")  # the newest is never the one dropped
        after_delete, after_total = await stored()
        assert after_delete == after_total < total
        assert not await store.save(owner, "m", None, [], answer("resp_pg_big", "z" * 5000))
    finally:
        await database.aclose()
