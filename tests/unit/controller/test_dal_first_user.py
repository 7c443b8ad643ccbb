"""`create_first_user`: only while no login exists at all, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from edgefleet.controller.dal import Database

pytestmark = pytest.mark.unit


def test_only_the_first_user_is_created(database: Database) -> None:
    assert database.create_first_user("admin", "hash-1", "admin", at=1.0) is True
    assert database.create_first_user("admin", "hash-2", "admin", at=2.0) is False
    assert database.create_first_user("other", "hash-3", "admin", at=3.0) is False
    assert database.get_user("admin") == ("hash-1", "admin")
    assert database.get_user("other") is None


def test_an_existing_login_blocks_it(database: Database) -> None:
    database.upsert_user("ops", "hash-ops", "read", at=1.0)
    assert database.create_first_user("admin", "hash-1", "admin", at=2.0) is False
    assert database.get_user("admin") is None
