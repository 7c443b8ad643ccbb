"""The controller's data-access layer: :class:`Database`, with SQLite and PostgreSQL behind it."""

from __future__ import annotations

from edgefleet.controller.config import DatabaseConfig
from edgefleet.controller.dal.base import Database, IngestOutcome, PurgeReport, Resolution, RetentionCutoffs

__all__ = ["Database", "IngestOutcome", "PurgeReport", "Resolution", "RetentionCutoffs", "open_database"]


def open_database(config: DatabaseConfig, *, migrate: bool = True) -> Database:
    """Open (and by default migrate) the database the config names: PostgreSQL for a URL, else SQLite."""
    database: Database
    if config.is_postgres:
        from edgefleet.controller.dal.postgres import PostgresDatabase

        database = PostgresDatabase(config.url, schema=config.schema_name, pool_size=config.pool_size)
    else:
        from edgefleet.controller.dal.sqlite import SqliteDatabase

        database = SqliteDatabase(config.resolved_sqlite_path(), pool_size=config.pool_size)
    if migrate:
        try:
            database.migrate()
        except BaseException:
            database.close()
            raise
    return database
