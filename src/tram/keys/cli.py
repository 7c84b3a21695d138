"""`tram keys create|list|show|update|revoke`: the key administration service (service.py)
acting as the master key, on the store the environment or `--config` names. Flags become the
admin API's bodies (`protocol/keys.py`), so a value the API refuses is refused here with the
same message, and what is stored is the same either way."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from tram.keys.service import KeyAdmin, expires_in_days, operator
from tram.protocol.keys import KeyCreate, KeyUpdate
from tram.protocol.validation import invalid_request_from
from tram.store.cli import config_path, run_on_store
from tram.store.keys import LIMIT_FIELDS, KeyRecord, KeyStore

__all__ = ["add_keys_parser"]


def _print(record: KeyRecord, key: str | None = None) -> None:
    data = record.as_json()
    if key is not None:
        data["key"] = key
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


M = TypeVar("M", bound=BaseModel)


def _body(schema: type[M], fields: dict[str, Any]) -> M:
    try:
        return schema.model_validate(fields)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None


def _create_body(args: argparse.Namespace) -> KeyCreate:
    """`tram keys create`'s flags as the body of POST /admin/keys."""
    fields: dict[str, Any] = {"name": args.name}
    if args.owner is not None:
        fields["owner"] = args.owner
    if args.model:
        fields["models"] = args.model
    if args.expires_in_days is not None:
        fields["expires_at"] = expires_in_days(args.expires_in_days)
    fields |= {name: getattr(args, name) for name in LIMIT_FIELDS
               if getattr(args, name) is not None}
    if args.admin:
        fields["admin"] = True
    return _body(KeyCreate, fields | _sharing_fields(args))


def _sharing_fields(args: argparse.Namespace) -> dict[str, Any]:
    """--priority (a class or a number; "none" removes it on update) and --weight (0: none)."""
    fields: dict[str, Any] = {}
    if args.priority is not None:
        value = args.priority
        fields["priority"] = None if value == "none" else \
            int(value) if value.lstrip("-").isdigit() else value
    if args.weight is not None:
        fields["weight"] = args.weight or None
    return fields


def _update_body(args: argparse.Namespace) -> KeyUpdate:
    """`tram keys update`'s flags as the body of PATCH /admin/keys/{id}: only what is given
    changes, and a limit of 0 removes it (null in the API)."""
    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["name"] = args.name
    if args.model is not None:
        fields["models"] = args.model
    if args.all_models:
        fields["models"] = None
    if args.expires_in_days is not None:
        fields["expires_at"] = expires_in_days(args.expires_in_days)
    for name in LIMIT_FIELDS:
        value = getattr(args, name)
        if value is not None:
            fields[name] = value or None
    if args.admin is not None:
        fields["admin"] = args.admin
    return _body(KeyUpdate, fields | _sharing_fields(args))


def _keys(args: argparse.Namespace) -> int:
    async def create(store: KeyStore) -> int:
        record, key = await KeyAdmin(store).create(operator(), _create_body(args))
        _print(record, key)
        print("tram: the key is shown once; only its digest is stored", file=sys.stderr)
        return 0

    async def listing(store: KeyStore) -> int:
        for record in await KeyAdmin(store).list(operator()):
            data = record.as_json()
            models = ",".join(data["models"]) if data["models"] else "*"
            print(f"{data['id']}  {data['status']:<8} {data['key_hint']}  {data['name']}  "
                  f"owner={data['owner'] or '-'}  models={models}  "
                  f"expires={data['expires_at'] or '-'}")
        return 0

    async def show(store: KeyStore) -> int:
        _print(await KeyAdmin(store).show(operator(), args.id))
        return 0

    async def update(store: KeyStore) -> int:
        _print(await KeyAdmin(store).update(operator(), args.id, _update_body(args)))
        return 0

    async def revoke(store: KeyStore) -> int:
        _print(await KeyAdmin(store).revoke(operator(), args.id))
        return 0

    actions = {"create": create, "list": listing, "show": show, "update": update,
               "revoke": revoke}
    return run_on_store(args, actions[args.action])


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
        parser.add_argument("--priority", help="fair queue class (interactive, batch) or "
                            "priority number (lower first)")
        parser.add_argument("--weight", type=float,
                            help="share within its class in the fair queue (default 1)")
    create.add_argument("--admin", action="store_true", help="may use the admin API")
    update.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None,
                        help="grant (--admin) or remove (--no-admin) admin access")
    revoke = actions.add_parser("revoke", help="revoke a key (at once, everywhere)")
    revoke.add_argument("id", help="the key's id, or its name")
    for parser in (create, actions.choices["list"], show, update, revoke):
        parser.add_argument("--config", type=config_path, help="tram.yaml (for database.url)")
    keys.set_defaults(run=_keys)
