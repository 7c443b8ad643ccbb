"""Opening a throw-away controller database of either kind, for the controller tests."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgefleet.controller.config import DatabaseConfig
from edgefleet.controller.dal import Database, open_database

PG_URL = os.environ.get("EDGEFLEET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def postgres_reason() -> str | None:
    """None when the test PostgreSQL answers, else why the postgres tests skip."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'edgefleet[controller]')"
    try:
        with psycopg.connect(PG_URL, connect_timeout=2):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {PG_URL}: {str(exc).strip()}"


def database_config(kind: str, tmp_path: Path) -> DatabaseConfig:
    if kind == "sqlite":
        return DatabaseConfig(sqlite_path=tmp_path / "controller.db")
    return DatabaseConfig(url=PG_URL, schema_name=f"ef_test_{uuid.uuid4().hex[:12]}")


@contextmanager
def throwaway_database(kind: str, tmp_path: Path) -> Iterator[tuple[Database, DatabaseConfig]]:
    if kind == "postgres":
        reason = postgres_reason()
        if reason:
            pytest.skip(reason)
    config = database_config(kind, tmp_path)
    database = open_database(config)
    try:
        yield database, config
    finally:
        database.close()
        if kind == "postgres":
            drop_schema(config.schema_name)


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


DB_KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
