"""The stored-responses store on its own: group commit, key scope, retention and the cap."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from tram.config import ResponsesConfig
from tram.errors import StoreUnavailable
from tram.store.db import Database, database_url
from tram.store.models import StoredResponse
from tram.store.responses import ResponseStore


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(database_url(None, tmp_path))
    await database.migrate()
    yield database
    await database.aclose()


def _answer(rid: str, text: str = "x") -> dict:
    return {"id": rid, "object": "response", "status": "completed",
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": text}]}]}


async def test_concurrent_saves_are_all_committed_and_chained(database: Database) -> None:
    store = ResponseStore(database, ResponsesConfig())
    await asyncio.gather(*(store.save("key_a", "m", None, [{"role": "user", "content": str(n)}],
                                      _answer(f"resp_{n}")) for n in range(50)))
    await store.save("key_a", "m", "resp_7", [{"role": "user", "content": "next"}],
                     _answer("resp_next"))
    chain = await store.conversation("key_a", "resp_next")
    assert chain is not None and [turn.id for turn in chain] == ["resp_7", "resp_next"]
    assert chain[0].input_items == [{"role": "user", "content": "7"}]
    assert await store.get("key_b", "resp_7") is None  # another key: as if it did not exist
    assert await store.conversation("key_b", "resp_next") is None
    assert not await store.delete("key_b", "resp_7")
    assert await store.delete("key_a", "resp_7")
    assert await store.get("key_a", "resp_7") is None


async def test_retention_and_the_per_key_cap(database: Database) -> None:
    store = ResponseStore(database, ResponsesConfig(retention_days=1, max_bytes_per_key=4000))
    for n in range(8):  # ~250 bytes each
        await store.save("key_a", "m", None, [], _answer(f"resp_{n}", "y" * 150))
    await store.save("key_b", "m", None, [], _answer("resp_b"))
    async with database.sessions.begin() as session:  # resp_0 is two days old
        await session.execute(update(StoredResponse).where(StoredResponse.id == "resp_0")
                              .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    assert await store.get("key_a", "resp_0") is None  # expired: not served before pruning
    for n in range(8, 20):
        await store.save("key_a", "m", None, [], _answer(f"resp_{n}", "y" * 150))
    await store.prune()
    kept = [n for n in range(20) if await store.get("key_a", f"resp_{n}") is not None]
    assert kept == list(range(20 - len(kept), 20)) and 10 <= len(kept) < 19  # newest kept
    assert await store.get("key_b", "resp_b") is not None  # another key's rows untouched


async def test_a_store_outage_is_a_503_not_a_silent_loss(database: Database) -> None:
    store = ResponseStore(database, ResponsesConfig())
    await database.aclose()
    (Path(database.url.split(":///", 1)[1])).unlink()
    (Path(database.url.split(":///", 1)[1])).mkdir()  # the file is now unusable
    with pytest.raises(StoreUnavailable):
        await store.save("key_a", "m", None, [], _answer("resp_lost"))
