"""The store: SQLAlchemy 2 (async) models, repositories (the only SQL), Alembic migrations."""

from tram.store.db import Database, database_url
from tram.store.keys import KeyRecord, KeyStore, NewKey

__all__ = ["Database", "KeyRecord", "KeyStore", "NewKey", "database_url"]
