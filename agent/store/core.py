"""``StoreCore``: the store's connection, transactions, and upkeep (retention, checkpoints,
vacuum); :class:`~edgefleet.agent.store.store.Store` adds the data API on top.

One WAL-mode file. Every write is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a
kill -9 at any moment leaves either the whole batch or none of it; WAL keeps the file
consistent. A store is safe to share between threads (one connection behind a lock).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import sqlite_utils

from edgefleet.agent.store.config import StoreConfig
from edgefleet.agent.store.connection import StoreFullError, connect, lock_shared, translate_error
from edgefleet.agent.store.migrations import read_schema_version
from edgefleet.agent.store.outbox import HeldWrites
from edgefleet.agent.store.retention import RetentionReport, disk_bytes, enforce_retention, used_bytes
from edgefleet.agent.store.rows import RESULT_COLUMNS
from edgefleet.agent.store.wear import WriteMeter
from edgefleet.errors import StoreError

__all__ = ["CheckpointMode", "StoreCore"]

log = logging.getLogger(__name__)

CheckpointMode = Literal["PASSIVE", "FULL", "RESTART", "TRUNCATE"]

_MIN_CAP_BYTES = 64 * 1024
_T = TypeVar("_T")


class StoreCore:
    """The connection and its transactions; open a :class:`Store` rather than this."""

    def __init__(self, conn: sqlite3.Connection, path: Path, config: StoreConfig, lock_fd: int) -> None:
        self._conn = conn
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self.path = path
        self.config = config
        self._lock_fd: int | None = lock_fd
        self._lock = threading.RLock()
        self._meter = WriteMeter()
        self._held = HeldWrites()
        # Due at once: a store already over its cap at start-up is trimmed by the first write.
        self._next_retention = time.monotonic()
        self.last_retention: RetentionReport | None = None
        # Set while this thread evicts for a full disk: the eviction's own writes must not recurse.
        self._evicting = threading.local()
        variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_statement = max(1, min(config.write_chunk_rows, variables // len(RESULT_COLUMNS)))

    # -- opening and closing --------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, config: StoreConfig | None = None) -> Self:
        """Open (creating or migrating forward) the store at ``path`` (default ``config.path``)."""
        config = config or StoreConfig()
        db_path = Path(path if path is not None else config.path)
        lock_fd = lock_shared(db_path)
        try:
            conn = connect(db_path, config)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(conn, db_path, config, lock_fd)

    def close(self) -> None:
        with self._lock:
            if self._lock_fd is None:
                return
            try:
                self._held.interval_s = None
                self.flush_held()
            except StoreError as exc:  # closing must not fail; unsent acks only mean resends
                log.warning("store %s: held acknowledgements and metrics not committed: %s", self.path, exc)
            try:
                self._conn.close()
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._lock_fd is None

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, metered for flash wear; SQLite errors become StoreError."""
        with self._lock:
            if self._lock_fd is None:
                raise StoreError(f"cannot {what}: the store {self.path} is closed", path=str(self.path))
            conn = self._conn
            held = self._held.take() if self._held else None
            try:
                with self._meter.measure():
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        if held is not None:
                            HeldWrites.apply(conn, held)
                        yield conn
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                if held is not None:
                    self._held.committed(held)
                    held = None
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
                raise  # a refused row: write_results sorts the good records from the bad
            except sqlite3.DatabaseError as exc:  # busy, full, read-only, malformed ...
                raise translate_error(what, self.path, exc) from exc
            finally:
                if held is not None:  # rolled back: held again, for the next transaction
                    self._held.restore(held)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-statement reads."""
        with self._lock:
            if self._lock_fd is None:
                raise StoreError(f"the store {self.path} is closed", path=str(self.path))
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def add_event(
        self, kind: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> int:
        """Record an event; Store implements it (retention raises one for evictions)."""
        raise NotImplementedError

    def flush_held(self, *, only_if_due: bool = False) -> bool:
        """Commit held acknowledgements and metrics now (or only once due); True if it did."""
        if not self._held or (only_if_due and not self._held.due()):
            return False
        with self._write("commit held acknowledgements and metrics"):
            pass  # _write applies what is held
        return True

    # -- maintenance ----------------------------------------------------------------------------

    def _maybe_retention(self) -> None:
        with self._lock:  # checked under the lock so concurrent writers run it once
            if time.monotonic() >= self._next_retention:
                self.enforce_retention()

    def enforce_retention(self, *, now: float | None = None) -> RetentionReport:
        """Run retention now (writes also run it every ``retention_interval_s``)."""
        return self._retention(
            self.config, now=now, why=f"over its hard cap of {self.config.hard_max_bytes} bytes"
        )

    def _retention(self, config: StoreConfig, *, now: float | None, why: str) -> RetentionReport:
        with self._lock:
            self._next_retention = time.monotonic() + self.config.retention_interval_s
            try:
                with self._meter.measure():
                    report = enforce_retention(self._conn, self.path, config, now=now)
                    if self.config.wal_autocheckpoint_pages == 0:
                        # No automatic checkpoints: this is the periodic one, so the WAL stays bounded.
                        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.OperationalError as exc:
                raise translate_error("enforce retention", self.path, exc) from exc
            self.last_retention = report
            evicted = report.evicted_unsynced_total
            if evicted:
                with self._write("count evictions") as conn:
                    conn.execute(
                        "UPDATE store_meta SET value = value + ? WHERE key = 'evicted_unsynced_total'",
                        (evicted,),
                    )
                log.warning("store %s: evicted %d unsynced items %s", why, evicted, report.evicted_unsynced)
                self.add_event(
                    "store.evicted_unsynced",
                    f"store {why}: evicted {evicted} unsynced items, oldest first",
                    level="error",
                    data={"count": evicted, "by_kind": dict(report.evicted_unsynced)},
                )
            return report

    def _with_space(self, write: Callable[[], _T]) -> _T:
        """Run a write; if the disk is full, evict down to 80 % of the store and retry once.

        Best effort: deleting also needs a little room in the WAL, which a disk filled by
        something else may not have. The hard cap is what keeps the store from filling it.
        """
        try:
            return write()
        except StoreFullError:
            if getattr(self._evicting, "active", False):  # the eviction's own event did not fit
                raise
        with self._lock:  # one thread evicts; the others wait, then retry into the freed space
            try:
                return write()
            except StoreFullError:
                if getattr(self._evicting, "active", False):
                    raise
            self._evicting.active = True
            try:
                cap = max(_MIN_CAP_BYTES, int(used_bytes(self._conn) * 0.8))
                emergency = self.config.model_copy(
                    update={"max_bytes": cap, "hard_max_bytes": cap, "retention_headroom": 0.0}
                )
                self._retention(emergency, now=None, why="found the disk full")
            finally:
                self._evicting.active = False
            return write()

    def checkpoint(self, mode: CheckpointMode = "PASSIVE") -> tuple[int, int, int]:
        """Checkpoint the WAL now; returns SQLite's (busy, wal frames, frames checkpointed)."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise StoreError(f"unknown checkpoint mode {mode!r}", hint="PASSIVE, FULL, RESTART or TRUNCATE")
        with self._lock, self._meter.measure():
            busy, frames, done = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return int(busy), int(frames), int(done)

    def vacuum(self, *, full: bool = False) -> int:
        """Give free pages back to the filesystem; returns bytes saved on disk.

        The default is an incremental vacuum plus a WAL truncation (cheap, in bounded steps).
        ``full=True`` rewrites the whole file (VACUUM): it needs as much free disk as the store.
        """
        with self._lock:
            before = disk_bytes(self.path)
            try:
                with self._meter.measure():
                    if full:
                        self._conn.execute("VACUUM")
                    else:
                        # executescript() steps it to completion; execute() frees one page.
                        self._conn.executescript("PRAGMA incremental_vacuum;")
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.OperationalError as exc:
                raise translate_error("vacuum", self.path, exc) from exc
            return before - disk_bytes(self.path)

    def integrity_check(self) -> list[str]:
        """SQLite's integrity_check lines; ``["ok"]`` when the file is sound."""
        with self._lock:
            return [str(row[0]) for row in self._conn.execute("PRAGMA integrity_check")]

    @property
    def schema_version(self) -> int:
        with self._lock:
            return read_schema_version(self._conn)
