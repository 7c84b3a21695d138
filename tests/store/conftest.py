from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.postgres import Postgres
from tram.store.db import database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store of the test's own: a SQLite file, or a database of its own on the module's
    PostgreSQL server."""
    if request.param == "sqlite":
        return database_url(None, tmp_path)
    server: Postgres = request.getfixturevalue("postgres")
    return database_url(server.new_database(), tmp_path)
