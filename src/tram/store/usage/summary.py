"""What `tram usage`, `GET /admin/usage` and the pages show: usage rows summed by key, model,
day or route (requests, tokens, errors, error rate, estimated rows; busiest first)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer as Integer_
from sqlalchemy import func, select

from tram.store.db import Database
from tram.store.models import UsageEvent, VirtualKey

__all__ = ["usage_summary"]


async def usage_summary(database: Database, group_by: str, since: dt.datetime | None = None,
                        key_id: str | None = None,
                        model: str | None = None) -> list[dict[str, Any]]:
    """Requests, tokens and errors grouped by key, model, day or route (busiest first), optionally
    for one key or one model (e.g. one key's tokens by day)."""
    column = {"key": UsageEvent.key_id, "model": UsageEvent.model,
              "day": func.date(UsageEvent.ts), "route": UsageEvent.route}[group_by]
    query: Any = select(
        column.label("group"),
        func.count().label("requests"),
        func.coalesce(func.sum(UsageEvent.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(UsageEvent.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(func.cast(UsageEvent.status >= 400, Integer_)), 0).label("errors"),
        func.coalesce(func.sum(func.cast(UsageEvent.tokens_estimated, Integer_)), 0)
        .label("estimated"),
    ).group_by(column).order_by(func.count().desc())
    if since is not None:
        query = query.where(UsageEvent.ts >= since)
    if key_id is not None:
        query = query.where(UsageEvent.key_id == key_id)
    if model is not None:
        query = query.where(UsageEvent.model == model)
    async with database.sessions() as session:
        rows = (await session.execute(query)).all()
        names: dict[str, tuple[str, str | None]] = {}
        if group_by == "key":  # people think in names: each id's name and owner beside it
            ids = [str(r.group) for r in rows if r.group is not None]
            found = await session.execute(select(VirtualKey.id, VirtualKey.name,
                                                 VirtualKey.owner).where(VirtualKey.id.in_(ids)))
            names = {row.id: (row.name, row.owner) for row in found}
    summary = [_row(group_by, r) for r in rows]
    if group_by == "key":
        for row in summary:
            key = row["key"]
            row["name"], row["owner"] = names.get(
                key, ("master key", None) if key == "master" else (None, None))
    return summary


def _row(group_by: str, r: Any) -> dict[str, Any]:
    return {group_by: str(r.group) if r.group is not None else None, "requests": r.requests,
             "prompt_tokens": int(r.prompt_tokens), "completion_tokens": int(r.completion_tokens),
             "total_tokens": int(r.prompt_tokens) + int(r.completion_tokens),
             "errors": int(r.errors),
             # Requests whose tokens are the gateway's count, not the engine's (cut streams).
             "estimated_requests": int(r.estimated),
             "error_rate": round(int(r.errors) / r.requests, 4) if r.requests else 0.0}
