"""Migration bookkeeping on in-memory databases."""

from __future__ import annotations

import sqlite3

import pytest

from edgefleet.agent.store import MIGRATIONS, SCHEMA_VERSION, migrate
from edgefleet.agent.store.migrations import read_schema_version

pytestmark = pytest.mark.unit


def test_versions_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == MIGRATIONS[-1].version >= 2
    assert all(m.description for m in MIGRATIONS)


def test_migrate_step_by_step_records_each_version() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert read_schema_version(conn) == 0
    assert migrate(conn, target=1) == [1]
    assert read_schema_version(conn) == 1
    assert migrate(conn) == list(range(2, SCHEMA_VERSION + 1))
    assert migrate(conn) == []
    rows = conn.execute("SELECT version, description FROM schema_version ORDER BY version").fetchall()
    assert rows == [(m.version, m.description) for m in MIGRATIONS]


def test_target_out_of_range_is_a_programming_error() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    with pytest.raises(ValueError, match="target schema version"):
        migrate(conn, target=SCHEMA_VERSION + 1)
