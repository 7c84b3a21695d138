"""The stored-responses store on its own: group commit, key scope, retention and the cap."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tram.config import ResponsesConfig
from tram.errors import StoreUnavailable
from tram.store.db import Database, database_url
from tram.store.models import StoredResponse, StoredResponseTotal
from tram.store.stored_responses import ResponseStore


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


async def _stored_bytes(database: Database, owner: str) -> int:
    """The key's stored bytes, summed over its rows; checked against the running total the
    cap is held to, which must agree after every insert, drop, deletion and prune."""
    async with database.sessions() as session:
        summed = int(await session.scalar(select(func.sum(StoredResponse.size_bytes))
                                           .where(StoredResponse.key_id == owner)) or 0)
        total = await session.get(StoredResponseTotal, owner)
    assert (total.size_bytes if total is not None else 0) == summed
    return summed


async def test_the_cap_holds_in_the_commit_that_stores_a_turn(database: Database) -> None:
    store = ResponseStore(database, ResponsesConfig(max_bytes_per_key=4000))
    for n in range(30):  # ~250 bytes each, one commit each
        await store.save("key_a", "m", None, [], _answer(f"resp_{n}", "y" * 150))
        assert await _stored_bytes(database, "key_a") <= 4000
    await asyncio.gather(*(store.save("key_a", "m", None, [], _answer(f"resp_{n}", "y" * 150))
                           for n in range(30, 60)))  # many turns in one commit
    assert 3000 < await _stored_bytes(database, "key_a") <= 4000
    assert await store.get("key_a", "resp_0") is None
    assert await store.save("key_b", "m", None, [], _answer("resp_b"))
    # A turn larger than the whole cap is not stored, and costs the key none of its turns.
    kept = await _stored_bytes(database, "key_a")
    assert not await store.save("key_a", "m", None, [], _answer("resp_big", "z" * 5000))
    assert await store.get("key_a", "resp_big") is None
    assert await _stored_bytes(database, "key_a") == kept
    assert await store.get("key_b", "resp_b") is not None
    assert await store.delete("key_a", "resp_59")
    assert await _stored_bytes(database, "key_a") < kept
    async with database.sessions.begin() as session:  # every turn of key_a expires
        await session.execute(update(StoredResponse).where(StoredResponse.key_id == "key_a")
                              .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40)))
    await store.prune()
    assert await _stored_bytes(database, "key_a") == 0


async def test_a_chain_is_read_newest_first_one_turn_at_a_time(database: Database) -> None:
    store = ResponseStore(database, ResponsesConfig())
    previous = None
    for n in range(4):
        await store.save("key_a", "m", previous, [], _answer(f"resp_{n}"))
        previous = f"resp_{n}"
    async with contextlib.aclosing(store.chain("key_a", "resp_3")) as turns:
        newest = [turn.id async for turn in turns]
    assert newest == ["resp_3", "resp_2", "resp_1", "resp_0"]
    async with contextlib.aclosing(store.chain("key_a", "resp_3")) as turns:
        assert (await anext(turns)).id == "resp_3"  # left early: closed, nothing else read
    assert [turn.id async for turn in store.chain("key_b", "resp_3")] == []
