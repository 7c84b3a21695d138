"""Usage events into `usage_events`: one insert per dialect, each ON CONFLICT (event_id) DO
NOTHING, so an event written twice (a journal replayed after a crash) is still one row."""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any

from sqlalchemy.sql.expression import Executable

from tram.store.db import Database
from tram.store.models import UsageEvent

__all__ = ["UsageRows"]

_COLUMNS = tuple(c.name for c in UsageEvent.__table__.columns if c.name != "id")
# Columns that events journaled by earlier versions lack.
_DEFAULTS: dict[str, Any] = {"event_id": None, "tokens_estimated": False, "image_pixels": 0,
                             "route": "chat"}
_SQLITE_INSERT = (f"INSERT INTO usage_events ({', '.join(_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT (event_id) DO NOTHING")


def _sqlite_stamp(ts: str | dt.datetime) -> str:
    """A UTC time as SQLAlchemy stores DateTime in SQLite ("2026-11-26 09:29:13.123456")."""
    if isinstance(ts, str) and len(ts) == 32 and ts.endswith("+00:00"):
        return f"{ts[:10]} {ts[11:26]}"  # as_usage's own format: a slice, no parsing
    when = dt.datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")


_ROW = operator.itemgetter(*_COLUMNS)
_TS = _COLUMNS.index("ts")


def _sqlite_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """An event as the insert's parameters: one C-level lookup of every column for the events
    of this version (a per-column loop cost more than the insert), defaults for older
    journals'."""
    try:
        row = list(_ROW(event))
    except KeyError:
        row = [event.get(column, _DEFAULTS.get(column)) for column in _COLUMNS]
    row[_TS] = _sqlite_stamp(row[_TS])
    return tuple(row)


class UsageRows:
    """Inserts batches of events in the store's dialect."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert: Executable | None = None
        if database.url.startswith("postgresql"):
            # Only the dialect in use is imported (each is megabytes of memory).
            from sqlalchemy.dialects import postgresql
            self._insert = postgresql.insert(UsageEvent).on_conflict_do_nothing(
                index_elements=["event_id"])

    async def insert(self, events: list[dict[str, Any]]) -> int:
        """One transaction; the number of events (stored already or now)."""
        if self._insert is None:
            return await self._insert_sqlite(events)
        rows = [{**_DEFAULTS, **e,
                 "ts": dt.datetime.fromisoformat(e["ts"]) if isinstance(e["ts"], str)
                 else e["ts"]} for e in events]
        async with self._db.engine.begin() as connection:
            await connection.execute(self._insert, rows)
        return len(rows)

    async def _insert_sqlite(self, events: list[dict[str, Any]]) -> int:
        """The same insert as a plain executemany: SQLAlchemy's per-row parameter processing
        cost a third of the CPU of writing a row (docs/decisions.md)."""
        rows = [_sqlite_row(e) for e in events]
        async with self._db.engine.begin() as connection:
            await connection.exec_driver_sql(_SQLITE_INSERT, rows)
        return len(rows)
