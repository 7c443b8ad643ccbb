"""SQLite implementation: one embedded file, WAL journal, zero set-up."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, cast

from edgefleet.controller.dal.sql import SqlConnection, SqlDatabase
from edgefleet.errors import StoreError

__all__ = ["SqliteDatabase"]

_BUSY_TIMEOUT_MS = 30_000
_VALUES_GROUP = re.compile(r"VALUES\s*(\([?,\s]+\))", re.IGNORECASE)
_MAX_VARIABLES = 30_000  # SQLite >= 3.32 allows 32,766 bound variables per statement


class _SqliteConnection:
    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self.raw.execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self.raw.execute(sql, params).rowcount

    def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self.raw.executemany(sql, rows)

    def run_many_returning(self, sql: str, rows: Sequence[Sequence[object]]) -> list[tuple[Any, ...]]:
        # executemany cannot return rows: repeat the VALUES group in chunks instead.
        match = _VALUES_GROUP.search(sql)
        if match is None:
            raise ValueError(f"not a single-row INSERT ... VALUES statement: {sql[:80]}")
        group = match.group(1)
        chunk = max(1, _MAX_VARIABLES // max(1, group.count("?")))
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            statement = sql[: match.start(1)] + ", ".join([group] * len(part)) + sql[match.end(1) :]
            found.extend(self.raw.execute(statement, [value for row in part for value in row]).fetchall())
        return found


class SqliteDatabase(SqlDatabase):
    dialect = "sqlite"
    greatest = "max"
    templates: ClassVar[dict[str, str]] = {
        "real": "REAL",
        "bigint": "INTEGER",
        "id_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "blob": "BLOB",
    }

    def __init__(self, path: Path, *, pool_size: int = 4) -> None:
        super().__init__(pool_size=pool_size)
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory for the controller database {path}: {exc}",
                path=str(path),
                hint="set database.sqlite_path to a writable location",
            ) from None

    def _open_connection(self) -> SqlConnection:
        try:
            raw = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA synchronous=NORMAL")
            raw.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            raw.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the controller database {self.path}: {exc}",
                path=str(self.path),
                hint="check that the file is a SQLite database and the directory is writable",
            ) from None
        return _SqliteConnection(raw)

    def _close_connection(self, conn: SqlConnection) -> None:
        cast(_SqliteConnection, conn).raw.close()

    def _transaction(self, conn: SqlConnection) -> AbstractContextManager[None]:
        return _immediate(cast(_SqliteConnection, conn).raw)

    def _lock_migrations(self, conn: SqlConnection) -> None:
        del conn  # BEGIN IMMEDIATE already holds the write lock.

    def _bucket(self, column: str, seconds: int) -> str:
        return f"CAST({column} / {int(seconds)} AS INTEGER) * {int(seconds)}"


@contextmanager
def _immediate(raw: sqlite3.Connection) -> Iterator[None]:
    raw.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")
