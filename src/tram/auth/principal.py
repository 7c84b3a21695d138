"""Key checks. No web framework here: the middleware hands in the header value.

Keys are compared as SHA-256 digests with `hmac.compare_digest`, so the time taken does not
depend on how much of a guess matched, and the clear key is not kept beyond start-up.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tram.errors import AuthenticationFailed, MissingAPIKey, StoreUnavailable
from tram.limits.base import KeyLimits
from tram.sharing.classes import KeyPriority
from tram.store.keys import KEY_PREFIX, KeyRecord, KeyStore

__all__ = ["Authenticator", "Principal", "bearer_token", "key_digest"]

STALE_IF_ERROR = 300.0  # seconds a key seen valid is still accepted while the store is down
RECENT_KEYS = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: the master key, or a virtual key with its own limits (an admin-scoped
    one may also use the admin API)."""

    key_id: str
    is_master: bool
    is_admin: bool = False
    allowed_models: frozenset[str] | None = None  # None: every model
    limits: KeyLimits | None = None
    # Its class or number (sharing/classes.py) and its weight in the fair queue (None: the
    # config's default for its class).
    priority: KeyPriority = "interactive"
    weight: float | None = None

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or a 401."""
    if not header:
        raise MissingAPIKey(
            "You didn't provide an API key. Send it in the Authorization header as "
            "'Authorization: Bearer <key>'."
        )
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed(
            "The Authorization header must be 'Bearer <key>'.",
        )
    return token


class Authenticator:
    """The master key (compared in constant time), then virtual keys looked up by digest.

    Virtual keys are looked up on every request, not cached, so that a revocation takes
    effect at once in every worker and instance sharing the store.
    """

    def __init__(self, master_key: str | None, keys: KeyStore | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._master_digest = key_digest(master_key) if master_key else None
        self._keys = keys
        self._master = Principal(key_id="master", is_master=True)
        self._clock = clock
        # Keys seen valid recently, used only while the store cannot be read (stale-if-error):
        # a database outage does not lock out every app, and revocation stays immediate
        # whenever the store answers.
        self._recent: collections.OrderedDict[bytes, tuple[KeyRecord, float]] = \
            collections.OrderedDict()

    async def _lookup(self, keys: KeyStore, token: str, digest: bytes) -> KeyRecord | None:
        try:
            record = await keys.find(token, digest.hex())  # hash_key's form: hashed once
        except (SQLAlchemyError, OSError):
            cached = self._recent.get(digest)
            if cached is not None and self._clock() - cached[1] < STALE_IF_ERROR:
                return cached[0]
            raise StoreUnavailable("The key store is unavailable; try again shortly.") from None
        if record is not None:
            self._recent[digest] = (record, self._clock())
            self._recent.move_to_end(digest)
            if len(self._recent) > RECENT_KEYS:
                self._recent.popitem(last=False)
        return record

    async def authenticate(self, token: str) -> Principal:
        digest = key_digest(token)
        if self._master_digest is not None and hmac.compare_digest(digest, self._master_digest):
            return self._master
        if self._keys is not None and token.startswith(KEY_PREFIX):
            record = await self._lookup(self._keys, token, digest)
            if record is not None:
                return _principal(record)
        # No part of the wrong key is echoed: it may be a near miss of a real one.
        raise AuthenticationFailed("Incorrect API key provided.")

    async def principal_of(self, key_id: str) -> Principal:
        """The principal of a key known by its id, as it stands now (a batch's lines run as
        the key that made the batch, read again for each line, so a revoked key stops them):
        AuthenticationFailed if it is revoked, expired or gone; StoreUnavailable if the store
        cannot say."""
        if key_id == self._master.key_id:
            return self._master
        if self._keys is None:
            raise AuthenticationFailed("The key that made this request no longer exists.")
        try:
            record = await self._keys.get(key_id)
        except (SQLAlchemyError, OSError):
            raise StoreUnavailable("The key store is unavailable; try again shortly.") from None
        if record is None:
            raise AuthenticationFailed("The key that made this request no longer exists.")
        return _principal(record)


def _principal(record: KeyRecord) -> Principal:
    """A key's principal; AuthenticationFailed unless it is active."""
    status = record.status()
    if status != "active":
        raise AuthenticationFailed(f"This API key has been {status}.")
    models = record.allowed_models
    return Principal(key_id=record.id, is_master=False, is_admin=record.is_admin,
                     allowed_models=frozenset(models) if models is not None else None,
                     limits=record.limits if record.limits.any() else None,
                     priority=record.priority if record.priority is not None
                     else "interactive", weight=record.weight)
