"""Virtual keys: the only SQL about keys. Only a SHA-256 digest of a key is ever stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import mmap
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select

from tram.errors import AmbiguousKeyName
from tram.limits.base import KeyLimits, Period
from tram.sharing.classes import KeyPriority
from tram.store.db import Database
from tram.store.models import UsageEvent, VirtualKey

__all__ = [
    "KEY_PREFIX",
    "LIMIT_FIELDS",
    "KeyRecord",
    "KeyStore",
    "NewKey",
    "hash_key",
    "revision_file_of",
]

KEY_PREFIX = "sk-tram-"
_MAX_CACHED = 100_000


def hash_key(key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is safe here (no dictionary to attack),
    # and it keeps the per-request lookup cheap.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


LIMIT_FIELDS = ("rpm", "tpm", "max_concurrency", "max_total_tokens", "budget_tokens",
                "budget_period")


@dataclass(frozen=True)
class NewKey:
    name: str
    owner: str | None = None
    allowed_models: list[str] | None = None
    expires_at: dt.datetime | None = None
    limits: KeyLimits = field(default_factory=KeyLimits)
    is_admin: bool = False
    priority: KeyPriority | None = None  # None: interactive
    weight: float | None = None  # None: the config's weight for its class


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    owner: str | None
    key_hint: str
    allowed_models: list[str] | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_at: dt.datetime
    limits: KeyLimits = field(default_factory=KeyLimits)
    is_admin: bool = False
    priority: KeyPriority | None = None
    weight: float | None = None

    def status(self, now: dt.datetime | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or _now()):
            return "expired"
        return "active"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "key", "name": self.name, "owner": self.owner,
            "key_hint": self.key_hint, "models": self.allowed_models,
            "expires_at": _iso(self.expires_at), "revoked_at": _iso(self.revoked_at),
            "created_at": _iso(self.created_at), "status": self.status(),
            "admin": self.is_admin, "priority": self.priority, "weight": self.weight,
            **{name: getattr(self.limits, name) for name in LIMIT_FIELDS},
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite returns naive datetimes; everything stored is UTC.
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _record(row: VirtualKey) -> KeyRecord:
    return KeyRecord(
        id=row.id, name=row.name, owner=row.owner, key_hint=row.key_hint,
        allowed_models=row.allowed_models, expires_at=_aware(row.expires_at),
        revoked_at=_aware(row.revoked_at), created_at=_aware(row.created_at) or _now(),
        limits=KeyLimits(rpm=row.rpm, tpm=row.tpm, max_concurrency=row.max_concurrency,
                         max_total_tokens=row.max_total_tokens, budget_tokens=row.budget_tokens,
                         budget_period=_period(row.budget_period)),
        is_admin=bool(row.is_admin), priority=priority_from_column(row.priority),
        weight=row.weight,
    )


def priority_column(value: KeyPriority | None) -> str | None:
    """How a key's priority is stored: a class name, or a number as text."""
    return str(value) if value is not None else None


def priority_from_column(value: str | None) -> KeyPriority | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def _period(value: str | None) -> Period | None:
    if value in ("day", "week", "month"):
        return value  # type: ignore[return-value]
    return None


class _SharedRevision:
    """Eight bytes every process of a SQLite store maps from one file (MAP_SHARED: a write by
    one is seen by all at once): a key change writes new random bytes, each lookup compares
    them with what its cache was filled under, reading memory rather than calling stat(2)
    (that system call was a measurable share of a virtual-key request; docs/decisions.md)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._map: mmap.mmap | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                if os.fstat(fd).st_size < 8:
                    os.ftruncate(fd, 8)  # zeros; a file of an older version is longer: kept
                self._map = mmap.mmap(fd, 8)
            finally:
                os.close(fd)  # the mapping stays
        return self._map

    def read(self) -> bytes:
        return self._mapped()[:8]

    def bump(self) -> None:
        self._mapped()[:8] = os.urandom(8)


class KeyStore:
    """Keys in the store. With a `revision_file` (a SQLite store: every process on one host),
    looked-up keys are cached in memory until any process changes a key, which writes new
    bytes into that file (`_SharedRevision`): a revocation is seen by every worker on its next
    request, without a database read per request. Without one (PostgreSQL, possibly several
    hosts) every request reads the store.
    """

    def __init__(self, database: Database, revision_file: Path | None = None) -> None:
        self._db = database
        self._revision = _SharedRevision(revision_file) if revision_file is not None else None
        self._cache: dict[str, KeyRecord | None] = {}
        self._cache_revision: bytes | None = None
        self._find_query = select(*VirtualKey.__table__.columns).where(
            VirtualKey.__table__.c.key_hash == bindparam("digest"))

    @property
    def database(self) -> Database:
        return self._db

    async def create(self, new: NewKey) -> tuple[KeyRecord, str]:
        """The new key's record and the key itself, which is not kept anywhere."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = VirtualKey(
            id="key_" + secrets.token_hex(8), key_hash=hash_key(key),
            key_hint=f"{key[:11]}…{key[-4:]}", name=new.name, owner=new.owner,
            allowed_models=new.allowed_models, expires_at=new.expires_at, revoked_at=None,
            created_at=_now(), rpm=new.limits.rpm, tpm=new.limits.tpm,
            max_concurrency=new.limits.max_concurrency,
            max_total_tokens=new.limits.max_total_tokens,
            budget_tokens=new.limits.budget_tokens,
            budget_period=new.limits.budget_period if new.limits.budget_tokens else None,
            is_admin=new.is_admin, priority=priority_column(new.priority), weight=new.weight,
        )
        async with self._db.sessions.begin() as session:
            session.add(row)
        self._changed()
        return _record(row), key

    async def list(self) -> list[KeyRecord]:
        async with self._db.sessions() as session:
            rows = await session.scalars(select(VirtualKey).order_by(VirtualKey.created_at))
            return [_record(row) for row in rows]

    async def resolve(self, ref: str) -> str | None:
        """A key's id from its id or its name (what people remember: `billing-app`); None if
        neither; AmbiguousKeyName listing the candidates if several keys have that name."""
        async with self._db.sessions() as session:
            if await session.get(VirtualKey, ref) is not None:
                return ref
            rows = list(await session.scalars(select(VirtualKey).where(VirtualKey.name == ref)
                                              .order_by(VirtualKey.created_at)))
        if not rows:
            return None
        if len(rows) > 1:
            candidates = ", ".join(
                f"{row.id} (owner {row.owner or '-'}, {_record(row).status()})" for row in rows)
            raise AmbiguousKeyName(f"{len(rows)} keys are named '{ref}': {candidates}. Use the "
                                   "key's id.", param="key")
        return rows[0].id

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._db.sessions() as session:
            row = await session.get(VirtualKey, key_id)
            return _record(row) if row is not None else None

    def _changed(self) -> None:
        """Tell every process sharing the store that keys changed."""
        if self._revision is not None:
            self._revision.bump()
        self._cache.clear()

    async def find(self, key: str, digest: str | None = None) -> KeyRecord | None:
        """The record of a presented key (by digest: `hash_key(key)`, passed in when the
        caller has it), whatever its status.

        A Core query on a plain connection (no ORM session), or the cache described above.
        """
        if digest is None:
            digest = hash_key(key)
        if self._revision is not None:
            revision = self._revision.read()
            if revision != self._cache_revision:
                self._cache.clear()
                self._cache_revision = revision
            if digest in self._cache:
                return self._cache[digest]
        async with self._db.engine.connect() as connection:
            result = await connection.execute(self._find_query, {"digest": digest})
            row = result.first()
        record = _record(row) if row is not None else None  # type: ignore[arg-type]
        if self._revision is not None:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = record
        return record

    async def update(self, key_id: str, changes: dict[str, Any]) -> KeyRecord | None:
        allowed = {"name", "owner", "allowed_models", "expires_at", "is_admin", "priority",
                   "weight", *LIMIT_FIELDS}
        if "priority" in changes:
            changes = {**changes, "priority": priority_column(changes["priority"])}
        async with self._db.sessions.begin() as session:
            row = await session.get(VirtualKey, key_id)
            if row is None:
                return None
            for field, value in changes.items():
                if field in allowed:
                    setattr(row, field, value)
        self._changed()
        return _record(row)

    async def revoke(self, key_id: str) -> KeyRecord | None:
        async with self._db.sessions.begin() as session:
            row = await session.get(VirtualKey, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = _now()
        self._changed()
        return _record(row)

    async def tokens_used(self, key_id: str, since: dt.datetime | None = None) -> int:
        """Tokens recorded for a key, all time or since a period's start (where a budget's
        counter starts; the (key_id, ts) index serves it)."""
        query = (select(func.coalesce(func.sum(UsageEvent.prompt_tokens), 0)
                        + func.coalesce(func.sum(UsageEvent.completion_tokens), 0))
                 .where(UsageEvent.key_id == key_id))
        if since is not None:
            query = query.where(UsageEvent.ts >= since)
        async with self._db.engine.connect() as connection:
            total = await connection.scalar(query)
        return int(total or 0)


def revision_file_of(database: Database) -> Path | None:
    local = database.local_file
    return local.with_name(local.name + ".keys-revision") if local is not None else None
