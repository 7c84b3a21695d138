"""`tram batches [list] [--key K] [--status S]` and `tram batches show ID`: batches as the
store holds them (every key's, as an administrator sees them), their progress and files, on
the store the environment or `--config` names."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import orjson

from tram.batches.shapes import batch_object
from tram.errors import NotFound
from tram.store.batches import BatchStore
from tram.store.cli import config_path, run_on_store
from tram.store.keys import KeyStore

__all__ = ["add_batches_parser"]


def _when(stamp: int | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _row(batch: dict[str, Any], key: str) -> str:
    counts = batch["request_counts"]
    done = counts["completed"] + counts["failed"]
    progress = f"{done}/{counts['total']}"
    return (f"{batch['id']:<38} {key:<20} {batch['status']:<11} {batch['endpoint']:<21} "
            f"{progress:>11} {counts['failed']:>7} {_when(batch['created_at']):>16}")


async def _list(store: KeyStore, args: argparse.Namespace) -> int:
    batches = BatchStore(store.database)
    owner = None
    if args.key is not None:
        owner = args.key if args.key == "master" else await store.resolve(args.key) or args.key
    found = await batches.page(owner, limit=args.limit, status=args.status)
    counts = await batches.counts(batch.id for batch in found)
    print(f"{'batch':<38} {'key':<20} {'status':<11} {'endpoint':<21} {'done/total':>11} "
          f"{'failed':>7} {'created (UTC)':>16}")
    for batch in found:
        print(_row(batch_object(batch, counts[batch.id]), batch.key_id))
    return 0


async def _show(store: KeyStore, batch_id: str) -> int:
    batches = BatchStore(store.database)
    batch = await batches.get(batch_id, None)
    if batch is None:
        raise NotFound(f"No batch with id '{batch_id}' found.")
    counts = await batches.counts([batch_id])
    shown = batch_object(batch, counts[batch_id]) | {"key_id": batch.key_id,
                                                     "lines_by_state": counts[batch_id].by_state}
    print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    return 0


def _batches(args: argparse.Namespace) -> int:
    async def work(store: KeyStore) -> int:
        if args.action == "show":
            return await _show(store, args.id)
        return await _list(store, args)

    return run_on_store(args, work)


def add_batches_parser(verbs: Any) -> None:
    batches = verbs.add_parser("batches", help="batches (/v1/batches): list, show",
                               description="Batches in Trạm's store, every key's: status, "
                                           "progress, files.")
    batches.add_argument("--config", type=config_path, help="tram.yaml (for database.url)")
    batches.set_defaults(run=_batches, action="list", key=None, status=None, limit=50)
    actions = batches.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="the newest batches (the default)")
    listing.add_argument("--key", help="only this key's, by id or name")
    listing.add_argument("--status", choices=["in_progress", "cancelling", "completed",
                                              "failed", "expired", "cancelled"])
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    show = actions.add_parser("show", help="one batch: its object, its key and its lines by "
                                           "state")
    show.add_argument("id", help="the batch's id (batch_…)")
