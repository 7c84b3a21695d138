"""Key administration: every rule about creating, changing and revoking virtual keys, written
once. The admin API (`api/key_admin.py`) and `tram keys` (`keys/cli.py`) are adapters that parse
their input into the same bodies (`protocol/keys.py`) and print or answer what this returns.

Who may do what:

- The admin API is for the master key and admin keys (`require_administrator`); `tram keys`
  acts as the master key (`operator()`): whoever can open the store on the host is.
- Only the master key grants or removes admin access (sending `admin` at all, true or false).
- An admin key manages every key that is not an admin key: it creates, changes, revokes,
  expires them. An admin key — another one or its own — is the master key's to change,
  expire or revoke, so one admin key cannot lock out another, nor lift its own limits or
  extend its own expiry. The one exception: an admin key may revoke itself (a holder who
  finds it leaked stops it at once, without waiting for the master key).
- Every key may be listed and read by every administrator.

The values:

- A key has a budget period exactly when it has a per-period budget: `budget_tokens` without
  a period gets `DEFAULT_BUDGET_PERIOD`; a period without `budget_tokens` is a 400; removing
  `budget_tokens` removes the period with it.
- An expiry is a moment with a time zone, stored in UTC; one in the past is allowed (it is how
  a key is expired now). `tram keys … --expires-in-days N` is `expires_in_days(N)`.
- A key is named by its id or its name; a name several keys share is a 400 listing them
  (`AmbiguousKeyName`), an unknown one a 404.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from tram.auth.principal import Principal
from tram.errors import AdminRequired, InvalidRequest, NotFound
from tram.limits.base import DEFAULT_BUDGET_PERIOD, KeyLimits, Period
from tram.protocol.keys import KeyCreate, KeyUpdate
from tram.store.keys import KeyRecord, KeyStore, NewKey

__all__ = ["KeyAdmin", "expires_in_days", "operator", "require_administrator"]

# Body fields stored under another column name.
_COLUMNS = {"models": "allowed_models", "admin": "is_admin"}


def operator() -> Principal:
    """Who `tram keys` acts as: the master key."""
    return Principal(key_id="master", is_master=True)


def require_administrator(actor: Principal) -> Principal:
    """The admin API's door: the master key or an admin key."""
    if not (actor.is_master or actor.is_admin):
        raise AdminRequired("Only the master key or an admin key may use the admin API.")
    return actor


def expires_in_days(days: float) -> dt.datetime:
    """The moment `days` from now (negative: in the past), in UTC."""
    try:
        if not math.isfinite(days):
            raise OverflowError
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    except OverflowError:
        raise InvalidRequest(f"An expiry {days} days from now is out of range.",
                             param="expires_in_days") from None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidRequest("expires_at needs a time zone, e.g. 2027-01-31T00:00:00Z.",
                             param="expires_at")
    return value.astimezone(dt.UTC) if value is not None else None


def _budget_period(tokens: int | None, period: Period | None,
                   period_sent: bool) -> Period | None:
    """The period a key with these budget tokens stores (see the module's docstring)."""
    if tokens is None:
        if period is not None and period_sent:
            raise InvalidRequest("budget_period needs budget_tokens.", param="budget_period")
        return None
    return period or DEFAULT_BUDGET_PERIOD


def _may_grant_admin(actor: Principal, body: KeyUpdate) -> None:
    if "admin" in body.model_fields_set and not actor.is_master:
        raise AdminRequired("Only the master key may grant or remove admin access.",
                            param="admin")


def _may_change(actor: Principal, target: KeyRecord, revoking: bool = False) -> None:
    if actor.is_master or not target.is_admin:
        return
    if revoking and target.id == actor.key_id:
        return  # an admin key may revoke itself
    what = "revoke" if revoking else "change or expire"
    raise AdminRequired(f"Only the master key may {what} an admin key ('{target.name}', "
                        f"{target.id}); an admin key manages keys without admin access.",
                        param="key_id")


class KeyAdmin:
    """Key administration on a key store, for one actor per call (see the module's
    docstring for the rules)."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    async def create(self, actor: Principal, body: KeyCreate) -> tuple[KeyRecord, str]:
        """The new key's record and the key itself (shown once, stored as a digest)."""
        require_administrator(actor)
        _may_grant_admin(actor, body)
        period = _budget_period(body.budget_tokens, body.budget_period,
                                "budget_period" in body.model_fields_set)
        return await self._store.create(NewKey(
            name=body.name, owner=body.owner, allowed_models=body.models,
            expires_at=_utc(body.expires_at), is_admin=bool(body.admin),
            priority=body.priority, weight=float(body.weight) if body.weight else None,
            limits=KeyLimits(rpm=body.rpm, tpm=body.tpm, max_concurrency=body.max_concurrency,
                             max_total_tokens=body.max_total_tokens,
                             budget_tokens=body.budget_tokens, budget_period=period)))

    async def list(self, actor: Principal) -> list[KeyRecord]:
        require_administrator(actor)
        return await self._store.list()

    async def show(self, actor: Principal, ref: str) -> KeyRecord:
        require_administrator(actor)
        return await self._find(ref)

    async def update(self, actor: Principal, ref: str, body: KeyUpdate) -> KeyRecord:
        """Change the fields sent (null removes a limit, the model list, owner or expiry)."""
        require_administrator(actor)
        target = await self._find(ref)
        _may_change(actor, target)
        _may_grant_admin(actor, body)
        changes = _changes(body, target)
        return self._found(await self._store.update(target.id, changes), ref)

    async def revoke(self, actor: Principal, ref: str) -> KeyRecord:
        """Revoke at once, for every worker (revoking a revoked key changes nothing)."""
        require_administrator(actor)
        target = await self._find(ref)
        _may_change(actor, target, revoking=True)
        return self._found(await self._store.revoke(target.id), ref)

    async def _find(self, ref: str) -> KeyRecord:
        key_id = await self._store.resolve(ref)
        return self._found(await self._store.get(key_id) if key_id is not None else None, ref)

    @staticmethod
    def _found(record: KeyRecord | None, ref: str) -> KeyRecord:
        if record is None:
            raise NotFound(f"No key with id or name '{ref}'.", param="key_id")
        return record


def _changes(body: KeyUpdate, target: KeyRecord) -> dict[str, Any]:
    """The store's column changes for an update of `target`."""
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if name == "expires_at":
            value = _utc(value)
        elif name == "admin":
            value = bool(value)
        changes[_COLUMNS.get(name, name)] = value
    tokens = changes.get("budget_tokens", target.limits.budget_tokens)
    period = _budget_period(tokens, changes.get("budget_period", target.limits.budget_period),
                            "budget_period" in changes)
    if period != target.limits.budget_period or "budget_period" in changes:
        changes["budget_period"] = period
    return changes
