from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.controller.dal import Database
from tests.unit.controller.db_fixtures import DB_KINDS, throwaway_database


@pytest.fixture(params=DB_KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty controller database: SQLite file, then a throw-away PostgreSQL schema."""
    with throwaway_database(request.param, tmp_path) as (db, _config):
        yield db
