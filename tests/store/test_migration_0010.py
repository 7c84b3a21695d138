"""Migration 0010 (a key's priority and weight in the fair queue), on SQLite and on a real
PostgreSQL: a store at 0009 with keys in it upgrades in place, and its keys keep working with
the defaults (no priority of their own: interactive; no weight: the class's from tram.yaml)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text

from tram.auth.principal import Authenticator
from tram.store.db import HEAD_REVISION, MIGRATIONS, Database
from tram.store.keys import KeyStore, hash_key

OLD_KEY = "sk-tram-from-before-0010"




async def _upgrade_to(database: Database, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    def upgrade(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with database.engine.begin() as connection:
        await connection.run_sync(upgrade)


async def test_keys_made_before_0010_keep_working_with_the_defaults(url: str) -> None:
    assert HEAD_REVISION == "0010"
    database = Database(url)
    try:
        await _upgrade_to(database, "0009")
        assert await database.schema_revision() == "0009"
        async with database.engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO virtual_keys (id, key_hash, key_hint, name, allowed_models, "
                "created_at, rpm, is_admin) VALUES ('key_old', :digest, 'sk-tram-fr…10', "
                "'old-app', NULL, :now, 60, false)"),
                {"digest": hash_key(OLD_KEY), "now": dt.datetime.now(dt.UTC)})
        await database.migrate()  # what `tram serve` does on start
        assert await database.schema_revision() == HEAD_REVISION
        keys = KeyStore(database)
        record = await keys.get("key_old")
        assert record is not None and record.name == "old-app"
        assert record.priority is None and record.weight is None
        assert record.as_json()["priority"] is None and record.as_json()["weight"] is None
        assert record.limits.rpm == 60
        principal = await Authenticator("sk-master", keys).authenticate(OLD_KEY)
        assert principal.key_id == "key_old"
        assert principal.priority == "interactive" and principal.weight is None
        # And the new columns take values.
        changed = await keys.update("key_old", {"priority": "batch", "weight": 2.5})
        assert changed is not None and changed.priority == "batch" and changed.weight == 2.5
        numbered = await keys.update("key_old", {"priority": 5})
        assert numbered is not None and numbered.priority == 5
    finally:
        await database.aclose()
