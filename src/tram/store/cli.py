"""`tram usage`, and opening the store for the CLI's verbs on it (`tram keys` too:
keys/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tram.config import ConfigError, load_config, load_settings
from tram.errors import NotFound, TramError
from tram.store.db import Database, database_url
from tram.store.keys import KeyStore, revision_file_of

__all__ = ["add_usage_parser", "config_path", "run_on_store"]


async def _open(args: argparse.Namespace, work: Callable[[KeyStore], Awaitable[int]],
                store_dead_journals: bool) -> int:
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


def run_on_store(args: argparse.Namespace, work: Callable[[KeyStore], Awaitable[int]],
                 store_dead_journals: bool = False) -> int:
    """Run `work` on the store that `--config` or the environment names; a refusal is one
    line on stderr (exit 1 for something not found, 2 for anything else)."""
    try:
        return asyncio.run(_open(args, work, store_dead_journals))
    except ConfigError as exc:
        print(f"tram: {exc}", file=sys.stderr)
        return 2
    except TramError as exc:
        print(f"tram: {exc.message}", file=sys.stderr)
        return 1 if isinstance(exc, NotFound) else 2


def _usage(args: argparse.Namespace) -> int:
    from tram.store.usage import usage_summary

    async def show(store: KeyStore) -> int:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days) \
            if args.days is not None else None
        key = args.key
        if key not in (None, "master"):
            key = await store.resolve(key) or key  # an id, or a key's name
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

    return run_on_store(args, show, store_dead_journals=True)


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
    usage.add_argument("--config", type=config_path, help="tram.yaml (for database.url)")
    usage.set_defaults(run=_usage)


def config_path(value: str) -> Any:
    """`--config`'s type (a Path, imported when used)."""
    from pathlib import Path

    return Path(value)
