"""`tram keys create|list|show|update|revoke`: virtual keys, straight on the store."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tram.config import ConfigError, load_config, load_settings
from tram.errors import AmbiguousKeyName
from tram.limits.base import KeyLimits
from tram.store.db import Database, database_url
from tram.store.keys import LIMIT_FIELDS, KeyRecord, KeyStore, NewKey, revision_file_of

__all__ = ["add_keys_parser", "add_usage_parser"]


def _expiry(days: float | None) -> dt.datetime | None:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days) if days is not None else None


def _print(record: KeyRecord, key: str | None = None) -> None:
    data = record.as_json()
    if key is not None:
        data["key"] = key
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _print_found(record: KeyRecord | None, key_id: str) -> int:
    if record is None:
        print(f"tram: no key {key_id}", file=sys.stderr)
        return 1
    _print(record)
    return 0


async def _run(args: argparse.Namespace, work: Callable[[KeyStore], Awaitable[int]],
               store_dead_journals: bool = False) -> int:
    settings = load_settings(config_path=args.config)
    configured = settings.database_url
    if configured is None and settings.config_path is not None:
        configured = load_config(settings.config_path, settings.env).database.url
    database = Database(database_url(configured, settings.data_dir))
    try:
        await database.migrate()
        if store_dead_journals:
            # What gateways that are gone (killed, or stopped while the database was down)
            # left in their journals is stored first, so usage counts every request answered.
            from tram.store.usage import UsageWriter

            await UsageWriter(database, settings.data_dir / "journal").recover()
        return await work(KeyStore(database, revision_file_of(database)))
    finally:
        await database.aclose()


def _keys(args: argparse.Namespace) -> int:
    async def create(store: KeyStore) -> int:
        limits = {f: getattr(args, f) for f in LIMIT_FIELDS}
        if limits["budget_tokens"] and not limits["budget_period"]:
            limits["budget_period"] = "month"
        record, key = await store.create(NewKey(
            name=args.name, owner=args.owner, allowed_models=args.model,
            expires_at=_expiry(args.expires_in_days), is_admin=args.admin,
            limits=KeyLimits(**limits)))
        _print(record, key)
        print("tram: the key is shown once; only its digest is stored", file=sys.stderr)
        return 0

    async def listing(store: KeyStore) -> int:
        for record in await store.list():
            data = record.as_json()
            models = ",".join(data["models"]) if data["models"] else "*"
            print(f"{data['id']}  {data['status']:<8} {data['key_hint']}  {data['name']}  "
                  f"owner={data['owner'] or '-'}  models={models}  "
                  f"expires={data['expires_at'] or '-'}")
        return 0

    async def show(store: KeyStore) -> int:
        return _print_found(await store.get(await _ref(store, args.id)), args.id)

    async def update(store: KeyStore) -> int:
        changes: dict[str, Any] = {}
        if args.name is not None:
            changes["name"] = args.name
        if args.model is not None:
            changes["allowed_models"] = args.model
        if args.all_models:
            changes["allowed_models"] = None
        if args.expires_in_days is not None:
            changes["expires_at"] = _expiry(args.expires_in_days)
        for name in LIMIT_FIELDS:
            value = getattr(args, name)
            if value is not None:
                changes[name] = value or None  # 0 removes the limit
        if args.admin is not None:
            changes["is_admin"] = args.admin
        return _print_found(await store.update(await _ref(store, args.id), changes), args.id)

    async def revoke(store: KeyStore) -> int:
        return _print_found(await store.revoke(await _ref(store, args.id)), args.id)

    actions = {"create": create, "list": listing, "show": show, "update": update,
               "revoke": revoke}
    try:
        return asyncio.run(_run(args, actions[args.action]))
    except ConfigError as exc:
        print(f"tram: {exc}", file=sys.stderr)
        return 2
    except AmbiguousKeyName as exc:
        print(f"tram: {exc.message}", file=sys.stderr)
        return 2


async def _ref(store: KeyStore, ref: str) -> str:
    """A key id from an id or a key's name."""
    return await store.resolve(ref) or ref


def _usage(args: argparse.Namespace) -> int:
    from tram.store.usage import usage_summary

    async def show(store: KeyStore) -> int:
        since = _expiry(-args.days) if args.days is not None else None
        key = await _ref(store, args.key) if args.key not in (None, "master") else args.key
        rows = await usage_summary(store.database, args.by, since, key, args.model)
        named = args.by == "key"
        head = f"{'name':<20} {'owner':<14} " if named else ""
        print(f"{head}{args.by:<24} {'requests':>9} {'prompt':>10} {'completion':>11} "
              f"{'errors':>7} {'error %':>7} {'estimated':>9}")
        for row in rows:
            names = f"{_cut(row['name'], 20):<20} {_cut(row['owner'], 14):<14} " if named else ""
            print(f"{names}{row[args.by] or '-':<24} {row['requests']:>9} "
                  f"{row['prompt_tokens']:>10} {row['completion_tokens']:>11} {row['errors']:>7} "
                  f"{row['error_rate'] * 100:>6.1f}% {row['estimated_requests']:>9}")
        if any(row["estimated_requests"] for row in rows):
            print("estimated: requests whose tokens the gateway counted because the engine never "
                  "reported them (streams cut by the client, requests cancelled mid-answer)")
        return 0

    try:
        return asyncio.run(_run(args, show, store_dead_journals=True))
    except ConfigError as exc:
        print(f"tram: {exc}", file=sys.stderr)
        return 2
    except AmbiguousKeyName as exc:
        print(f"tram: {exc.message}", file=sys.stderr)
        return 2


def _cut(text: str | None, width: int) -> str:
    text = text or "-"
    return text if len(text) <= width else text[:width - 1] + "…"


def add_usage_parser(verbs: Any) -> None:
    usage = verbs.add_parser("usage", help="requests and tokens by key, model or day",
                             description="Usage recorded in the store, one row per request.")
    usage.add_argument("--by", choices=["key", "model", "day", "route"], default="key")
    usage.add_argument("--days", type=float, help="only the last N days")
    usage.add_argument("--key", help="only this key, by id or name (e.g. --by day --key "
                                     "billing-app)")
    usage.add_argument("--model", help="only this model alias")
    usage.add_argument("--config", type=_path, help="tram.yaml (for database.url)")
    usage.set_defaults(run=_usage)


def add_keys_parser(verbs: Any) -> None:
    keys = verbs.add_parser("keys", help="virtual API keys: create, list, show, update, revoke",
                            description="Manage virtual keys in Trạm's store (the database of "
                                        "TRAM_DATABASE_URL or tram.yaml, else data/tram.db).")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--owner")
    create.add_argument("--model", action="append", help="allowed model (repeat); default all")
    create.add_argument("--expires-in-days", type=float)
    actions.add_parser("list", help="list keys (never the keys themselves)")
    show = actions.add_parser("show", help="one key's record")
    show.add_argument("id", help="the key's id, or its name")
    update = actions.add_parser("update", help="change name, models or expiry")
    update.add_argument("id", help="the key's id, or its name")
    update.add_argument("--name")
    update.add_argument("--model", action="append")
    update.add_argument("--all-models", action="store_true", help="allow every model")
    update.add_argument("--expires-in-days", type=float)
    for parser in (create, update):
        parser.add_argument("--rpm", type=int, help="requests per minute")
        parser.add_argument("--tpm", type=int, help="tokens per minute (as engines count them)")
        parser.add_argument("--max-concurrency", type=int, help="requests in flight at once")
        parser.add_argument("--max-total-tokens", type=int, help="token budget, all time")
        parser.add_argument("--budget-tokens", type=int,
                            help="token budget per period (renews at its start, UTC)")
        parser.add_argument("--budget-period", choices=["day", "week", "month"],
                            help="the budget's period (default month)")
    create.add_argument("--admin", action="store_true", help="may use the admin API")
    update.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None,
                        help="grant (--admin) or remove (--no-admin) admin access")
    revoke = actions.add_parser("revoke", help="revoke a key (at once, everywhere)")
    revoke.add_argument("id", help="the key's id, or its name")
    for parser in (create, actions.choices["list"], show, update, revoke):
        parser.add_argument("--config", type=_path, help="tram.yaml (for database.url)")
    keys.set_defaults(run=_keys)


def _path(value: str) -> Any:
    from pathlib import Path

    return Path(value)
