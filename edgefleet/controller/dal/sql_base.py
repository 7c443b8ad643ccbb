"""The shared core of both SQL databases: the connection protocol, pooling, transactions and
migrations. Statements use ``?`` placeholders; the PostgreSQL adapter rewrites them."""

from __future__ import annotations

import abc
import json
import queue
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, Protocol, cast

from edgefleet.controller.dal.base import (
    Database,
)
from edgefleet.controller.dal.migrations import MIGRATIONS
from edgefleet.controller.schemas import (
    CommandRecord,
    DeviceInfo,
)
from edgefleet.types import JSONValue

__all__ = ["SqlBase", "SqlConnection"]


class SqlConnection(Protocol):
    """The three calls the shared SQL needs; both drivers are adapted to it."""

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[object] = ()) -> int: ...

    def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...

    def run_many_returning(self, sql: str, rows: Sequence[Sequence[object]]) -> list[tuple[Any, ...]]:
        """A single-row ``INSERT ... VALUES (?, ...) ... RETURNING`` applied to every row."""
        ...


def _json_dict(text: str | None) -> dict[str, JSONValue]:
    if not text:
        return {}
    value = json.loads(text)
    return cast(dict[str, JSONValue], value) if isinstance(value, dict) else {"value": value}


def _device(row: tuple[Any, ...]) -> DeviceInfo:
    return DeviceInfo(
        device_id=row[0],
        online=bool(row[1]),
        first_seen=float(row[2]),
        last_seen=float(row[3]),
        status_changed_at=None if row[4] is None else float(row[4]),
        agent_version=row[5],
        model_name=row[6],
        model_version=row[7],
        hardware=_json_dict(row[8]),
        drifted=bool(row[9]),
        name=row[10],
        tags=_json_tags(row[11]),
    )


def _json_tags(text: str | None) -> list[str]:
    value = json.loads(text) if text else []
    return [str(t) for t in value] if isinstance(value, list) else []


def _command(row: tuple[Any, ...]) -> CommandRecord:
    return CommandRecord(
        command_id=row[0],
        device_id=row[1],
        name=row[2],
        args=_json_dict(row[3]),
        status=row[4],
        created_at=float(row[5]),
        updated_at=float(row[6]),
        created_by=row[7],
        detail=row[8],
    )


class SqlBase(Database):
    """Connections, transactions and migrations. ``greatest`` is the two-argument max; ``templates``
    fill migrations. Dialects (SQLite, PostgreSQL) supply the abstract methods."""

    greatest: str = "max"
    templates: ClassVar[dict[str, str]] = {}

    def __init__(self, *, pool_size: int = 4) -> None:
        self._pool: queue.LifoQueue[SqlConnection] = queue.LifoQueue()
        self._pool_size = pool_size
        self._closed = False

    # --- what a dialect provides ------------------------------------------------------------------
    @abc.abstractmethod
    def _open_connection(self) -> SqlConnection: ...

    @abc.abstractmethod
    def _close_connection(self, conn: SqlConnection) -> None: ...

    @abc.abstractmethod
    def _transaction(self, conn: SqlConnection) -> AbstractContextManager[None]: ...

    @abc.abstractmethod
    def _lock_migrations(self, conn: SqlConnection) -> None:
        """Inside the migration transaction: keep other controllers from migrating at the same time."""

    @abc.abstractmethod
    def _bucket(self, column: str, seconds: int) -> str:
        """SQL for ``floor(column / seconds) * seconds`` (columns hold non-negative epoch seconds)."""

    # --- connections ------------------------------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[SqlConnection]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._open_connection()
        try:
            yield conn
        except BaseException:
            # A failed statement may leave a driver-level transaction open; never pool such a connection.
            self._close_connection(conn)
            raise
        if self._closed or self._pool.qsize() >= self._pool_size:
            self._close_connection(conn)
        else:
            self._pool.put(conn)

    @contextmanager
    def _tx(self) -> Iterator[SqlConnection]:
        with self._conn() as conn, self._transaction(conn):
            yield conn

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                return
            self._close_connection(conn)

    # --- migrations -------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        applied: list[int] = []
        with self._tx() as conn:
            conn.run(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at"
                f" {self.templates['real']})"
            )
            self._lock_migrations(conn)
            done = {int(row[0]) for row in conn.rows("SELECT version FROM schema_migrations")}
            for version, description, template in MIGRATIONS:
                if version in done:
                    continue
                for statement in template.format(**self.templates).split(";\n"):
                    if statement.strip():
                        conn.run(statement)
                conn.run(
                    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                    (version, description, _now()),
                )
                applied.append(version)
        return applied

    def schema_version(self) -> int:
        with self._conn() as conn:
            rows = conn.rows("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)


def _now() -> float:
    return time.time()
