"""``Store``: the agent's local SQLite store and the outbox that sync drains.

One WAL-mode file. Every write is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a
kill -9 at any moment leaves either the whole batch or none of it; WAL keeps the file
consistent. A Store is safe to share between threads (one connection behind a lock).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlite_utils

from edgefleet.agent.store.batches import newest_results, record_bounds
from edgefleet.agent.store.config import StoreConfig
from edgefleet.agent.store.connection import (
    StoreFullError,
    connect,
    lock_shared,
    translate_error,
)
from edgefleet.agent.store.migrations import read_schema_version
from edgefleet.agent.store.records import (
    PRIORITY_EVENTS,
    PRIORITY_RESULTS,
    PRIORITY_TELEMETRY,
    MetricSample,
    OutboxItem,
    ResultRecord,
    StoreStats,
)
from edgefleet.agent.store.retention import RetentionReport, disk_bytes, enforce_retention, used_bytes
from edgefleet.agent.store.rows import (
    RESULT_COLUMNS,
    SELECT_RESULT,
    check_record,
    converted_rows,
    insert_results_statement,
    record_from_row,
    result_dict,
    result_rows,
)
from edgefleet.agent.store.wear import WriteMeter
from edgefleet.errors import StoreError

__all__ = ["EVENT_LEVELS", "Store"]

log = logging.getLogger(__name__)

EVENT_LEVELS = ("debug", "info", "warning", "error", "critical")
CheckpointMode = Literal["PASSIVE", "FULL", "RESTART", "TRUNCATE"]

# Rough wire size of one result row without its outputs; sync only uses it to cap a batch.
_RESULT_ROW_BYTES = 160
_IN_CHUNK = 500
_TABLES = ("results", "metrics", "events", "outbox")
_MIN_CAP_BYTES = 64 * 1024
_T = TypeVar("_T")


class Store:
    """Open with :meth:`open`; see ``docs/store.md`` for the schema and the durability modes."""

    def __init__(self, conn: sqlite3.Connection, path: Path, config: StoreConfig, lock_fd: int) -> None:
        self._conn = conn
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self.path = path
        self.config = config
        self._lock_fd: int | None = lock_fd
        self._lock = threading.RLock()
        self._meter = WriteMeter()
        # Due at once: a store already over its cap at start-up is trimmed by the first write.
        self._next_retention = time.monotonic()
        self.last_retention: RetentionReport | None = None
        # Set while this thread evicts for a full disk: the eviction's own writes must not recurse.
        self._evicting = threading.local()
        variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_statement = max(1, min(config.write_chunk_rows, variables // len(RESULT_COLUMNS)))

    # -- opening and closing --------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, config: StoreConfig | None = None) -> Store:
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
                self._conn.close()
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Store:
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
            try:
                with self._meter.measure():
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield conn
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
                raise  # a refused row: write_results sorts the good records from the bad
            except sqlite3.DatabaseError as exc:  # busy, full, read-only, malformed ...
                raise translate_error(what, self.path, exc) from exc

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

    # -- writes ---------------------------------------------------------------------------------

    def write_results(self, records: Sequence[ResultRecord]) -> list[int]:
        """Store a batch in one transaction, plus one outbox item referencing its id range.

        Returns the new ids in the order of ``records``. Records that cannot be stored (wrong
        types, NaN times, unknown ``answered_by``) are skipped, logged and raised as a
        ``store.rejected_results`` event; the ids returned are those of the others.
        """
        if not records:
            return []
        refused = (
            sqlite3.IntegrityError,
            sqlite3.InterfaceError,
            sqlite3.ProgrammingError,
            TypeError,
            ValueError,
        )
        try:
            ids = self._with_space(
                lambda: self._insert_result_list(
                    result_rows(records, raw_outputs=self.config.store_raw_outputs)
                )
            )
        except refused:
            # numpy scalars bind as blobs or not at all: retry with plain floats and ints, and only
            # then look for the records that are really wrong.
            try:
                ids = self._with_space(
                    lambda: self._insert_result_list(
                        converted_rows(records, raw_outputs=self.config.store_raw_outputs)
                    )
                )
            except refused:
                ids = self._write_valid_results(records)
        self._maybe_retention()
        return ids

    def write_result_rows(self, rows: list[tuple[Any, ...]]) -> Sequence[int]:
        """The bulk path for a producer that builds rows itself (the pipeline): one transaction
        and one outbox item, like :meth:`write_results`, without a record object per result.

        ``rows`` are tuples in ``RESULT_COLUMNS`` order holding plain Python values (``str``,
        ``float``, ``int``, ``None``; ``outputs`` packed by ``encode_outputs`` or ``None``), as
        :func:`~edgefleet.agent.store.rows.result_rows` makes them. They are bound unchecked; the
        schema's CHECKs still refuse wrong types, and a refused batch goes through
        :meth:`write_results`' validation, so bad rows are skipped and reported the same way.
        Returns the new ids (after a refusal, those of the rows that were stored).
        """
        if not rows:
            return range(0)
        try:
            statements, outputs_bytes = self._statements(rows)
        except ValueError:
            # Parameters are taken column by column: a short row would shift the others.
            width = len(RESULT_COLUMNS)
            bad = next(i for i, row in enumerate(rows) if len(row) != width)
            raise StoreError(
                f"result row {bad} has {len(rows[bad])} values; expected {width}: "
                f"{', '.join(RESULT_COLUMNS)}",
                hint="build rows with edgefleet.agent.store.rows.result_rows, or use write_results()",
            ) from None
        try:
            first, last = self._with_space(lambda: self._insert_results(statements, len(rows), outputs_bytes))
        except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError):
            return self.write_results([record_from_row(row) for row in rows])
        self._maybe_retention()
        return range(first, last + 1)

    def _statements(self, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[str, list[Any]]], int]:
        """The INSERTs for ``rows`` (chunks of ``write_chunk_rows``) and the outputs' bytes.

        Built before the transaction: the Python work happens outside the store's lock.
        """
        chunk = self._rows_per_statement
        raw = self.config.store_raw_outputs
        statements = []
        start = 0
        while start < len(rows):
            size = min(chunk, len(rows) - start)
            if size < chunk:
                # Powers of two: a statement of 256 rows takes ~10 ms to prepare, so remainders
                # of every size would churn the connection's statement cache (128 entries).
                size = 1 << (size.bit_length() - 1)
            statements.append(insert_results_statement(rows[start : start + size], raw_outputs=raw))
            start += size
        outputs_bytes = sum(len(row[7]) for row in rows if row[7] is not None) if raw else 0
        return statements, outputs_bytes

    def _insert_results(
        self, statements: list[tuple[str, list[Any]]], count: int, outputs_bytes: int
    ) -> tuple[int, int]:
        """Run the INSERTs of ``count`` rows and their outbox item in one transaction; returns
        (first id, last id)."""
        with self._write("write results") as conn:
            for sql, params in statements:
                cursor = conn.execute(sql, params)
            last = int(cursor.lastrowid or 0)
            # One writer under BEGIN IMMEDIATE and AUTOINCREMENT: the batch's ids are contiguous.
            first = last - count + 1
            conn.execute(
                "INSERT INTO outbox (kind, priority, created_at, payload, first_result_id, last_result_id, "
                "approx_bytes) VALUES ('results', ?, ?, NULL, ?, ?, ?)",
                (PRIORITY_RESULTS, time.time(), first, last, count * _RESULT_ROW_BYTES + outputs_bytes),
            )
            record_bounds(conn, first, last)
        return first, last

    def _insert_result_list(self, rows: list[tuple[Any, ...]]) -> list[int]:
        if not rows:
            return []
        statements, outputs_bytes = self._statements(rows)
        first, last = self._insert_results(statements, len(rows), outputs_bytes)
        return list(range(first, last + 1))

    def _write_valid_results(self, records: Sequence[ResultRecord]) -> list[int]:
        good: list[ResultRecord] = []
        problems: list[str] = []
        for index, record in enumerate(records):
            problem = check_record(record)
            if problem is None:
                good.append(record)
            else:
                problems.append(f"record {index}: {problem}")
        if not problems:
            raise StoreError(
                f"could not write {len(records)} results to {self.path} although every record is valid",
                path=str(self.path),
                hint="run `edgefleet store check`; this is a bug if it reports ok",
            )
        log.warning(
            "store: rejected %d of %d results: %s", len(problems), len(records), "; ".join(problems[:5])
        )
        ids = self._with_space(
            lambda: self._insert_result_list(converted_rows(good, raw_outputs=self.config.store_raw_outputs))
        )
        self.add_event(
            "store.rejected_results",
            f"rejected {len(problems)} of {len(records)} results",
            level="error",
            data={"count": len(problems), "problems": problems[:20]},
        )
        return ids

    def write_metrics(self, samples: Sequence[MetricSample]) -> int:
        """Store samples in the ``metrics`` time series and queue them as one "telemetry" item.

        Returns the outbox id. Samples with a non-numeric value or non-string labels are rejected
        with a StoreError naming the first bad one (nothing is written).
        """
        if not samples:
            raise StoreError("write_metrics() got no samples", hint="pass at least one MetricSample")
        rows: list[tuple[float, str, float, str]] = []
        wire: list[dict[str, Any]] = []
        for index, s in enumerate(samples):
            try:
                ts, value = float(s.ts), float(s.value)
                labels = {str(k): str(v) for k, v in dict(s.labels).items()}
                if not s.name or not isinstance(s.name, str):
                    raise ValueError("name must be a non-empty string")
            except (TypeError, ValueError, AttributeError) as exc:
                raise StoreError(
                    f"metric sample {index} ({s!r:.120}) is invalid: {exc}",
                    hint="a MetricSample needs ts (epoch s), a non-empty name, a numeric value and "
                    "labels as a str->str dict",
                ) from exc
            rows.append((ts, s.name, value, json.dumps(labels, sort_keys=True)))
            wire.append({"ts": ts, "name": s.name, "value": value, "labels": labels})
        payload = json.dumps({"samples": wire}, allow_nan=True)

        def insert() -> int:
            with self._write("write metrics") as conn:
                conn.executemany("INSERT INTO metrics (ts, name, value, labels) VALUES (?, ?, ?, ?)", rows)
                return self._enqueue_in(conn, "telemetry", payload, PRIORITY_TELEMETRY)

        outbox_id = self._with_space(insert)
        self._maybe_retention()
        return outbox_id

    def add_event(
        self, kind: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> int:
        """Record an event (error, drop, model change, ...) and queue it for sync; returns its id."""
        if level not in EVENT_LEVELS:
            raise StoreError(
                f"event level {level!r} is not one of {', '.join(EVENT_LEVELS)}", hint="use 'info' or 'error'"
            )
        if not kind:
            raise StoreError("an event needs a non-empty kind", hint="e.g. 'model.changed'")
        ts = time.time()
        data_text = self._json(data, f"event {kind!r} data") if data is not None else None

        def insert() -> int:
            with self._write("add an event") as conn:
                event_id = int(
                    conn.execute(
                        "INSERT INTO events (ts, kind, level, message, data) VALUES (?, ?, ?, ?, ?)",
                        (ts, kind, level, message, data_text),
                    ).lastrowid
                    or 0
                )
                payload = {
                    "id": event_id,
                    "ts": ts,
                    "kind": kind,
                    "level": level,
                    "message": message,
                    "data": data,
                }
                self._enqueue_in(conn, "events", json.dumps(payload), PRIORITY_EVENTS)
            return event_id

        return self._with_space(insert)

    def enqueue(self, kind: str, payload: dict[str, Any], *, priority: int) -> int:
        """Queue any other message for sync (status, drift, ota/progress, ...); returns its outbox id."""
        if kind == "results" or not kind:
            raise StoreError(
                f"outbox kind {kind!r} is reserved or empty", hint="results go through write_results()"
            )
        if not isinstance(priority, int) or priority < 0:
            raise StoreError(
                f"outbox priority must be an integer >= 0, got {priority!r}", hint="0 drains first"
            )
        if not isinstance(payload, dict):
            raise StoreError(f"outbox payload must be a dict, got {type(payload).__name__}", hint="wrap it")
        text = self._json(payload, f"{kind!r} payload")

        def insert() -> int:
            with self._write(f"enqueue {kind}") as conn:
                return self._enqueue_in(conn, kind, text, priority)

        outbox_id = self._with_space(insert)
        self._maybe_retention()
        return outbox_id

    @staticmethod
    def _json(value: object, what: str) -> str:
        try:
            return json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{what} is not JSON-serialisable: {exc}",
                hint="use str, int, float, bool, None, lists and str-keyed dicts only",
            ) from exc

    @staticmethod
    def _enqueue_in(conn: sqlite3.Connection, kind: str, payload: str, priority: int) -> int:
        cursor = conn.execute(
            "INSERT INTO outbox (kind, priority, created_at, payload, approx_bytes) VALUES (?, ?, ?, ?, ?)",
            (kind, priority, time.time(), payload, len(payload)),
        )
        return int(cursor.lastrowid or 0)

    # -- outbox ---------------------------------------------------------------------------------

    def outbox_peek(
        self, limit: int, *, max_bytes: int | None = None, skip: Container[int] = ()
    ) -> list[OutboxItem]:
        """The next pending items, priority then id order, without removing them.

        With ``max_bytes``, stops before the item that would exceed it (but always returns at
        least one item, so one oversize item cannot block the queue). Items whose id is in
        ``skip`` (sent, awaiting the controller's acknowledgement) count towards ``limit`` but are
        neither read nor returned.
        """
        items: list[OutboxItem] = []
        total = 0
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, kind, priority, created_at, payload, first_result_id, last_result_id, "
                "approx_bytes FROM outbox ORDER BY priority, id LIMIT ?",
                (max(int(limit), 0),),
            ).fetchall()
            for item_id, kind, priority, created_at, payload, first, last, approx in rows:
                if item_id in skip:
                    continue
                if max_bytes is not None and items and total + approx > max_bytes:
                    break
                total += approx
                body: dict[str, Any] | list[dict[str, Any]]
                if kind == "results":
                    body = [
                        result_dict(row)
                        for row in conn.execute(
                            f"{SELECT_RESULT} WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)
                        )
                    ]
                else:
                    body = json.loads(payload)
                items.append(OutboxItem(item_id, kind, priority, created_at, body, approx))
        return items

    def outbox_ack(self, ids: Iterable[int]) -> int:
        """Remove delivered items; results they reference are marked synced. Returns items removed."""
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        removed = 0
        now = time.time()
        with self._write("acknowledge outbox items") as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                ranges = conn.execute(
                    "SELECT first_result_id, last_result_id FROM outbox "
                    f"WHERE kind = 'results' AND id IN ({marks})",
                    chunk,
                ).fetchall()
                conn.executemany(
                    "UPDATE results SET synced_at = ? WHERE id BETWEEN ? AND ? AND synced_at IS NULL",
                    [(now, first, last) for first, last in ranges],
                )
                removed += conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
        return removed

    def outbox_backlog(self) -> dict[str, int]:
        """Pending items per kind (``results`` counted in rows); kinds with nothing pending are absent."""
        with self._read() as conn:
            backlog = {
                str(kind): int(n)
                for kind, n in conn.execute(
                    "SELECT kind, count(*) FROM outbox WHERE kind != 'results' GROUP BY kind ORDER BY kind"
                )
            }
            # The unsynced results are exactly the id ranges of the pending results items (a write
            # adds rows and their item together, an ack syncs a range and drops its item, eviction
            # trims both): one row per batch to add up, not a count over every unsynced result.
            unsynced = int(
                conn.execute(
                    "SELECT coalesce(sum(last_result_id - first_result_id + 1), 0) FROM outbox "
                    "WHERE kind = 'results'"
                ).fetchone()[0]
            )
        if unsynced:
            backlog["results"] = unsynced
        return backlog

    def outbox_floor(self) -> int:
        """Lowest outbox id still held, or the next id when the outbox is empty: every id below it
        has left the store (acknowledged, dropped or evicted). The controller's gap detection uses it."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT coalesce((SELECT min(id) FROM outbox), "
                "(SELECT seq + 1 FROM sqlite_sequence WHERE name = 'outbox'), 1)"
            ).fetchone()
        return int(row[0])

    # -- reads ----------------------------------------------------------------------------------

    def query_results(
        self, *, since: float | None = None, stream: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Stored results, newest first (by created_at, then id); ``since`` is an epoch-seconds
        lower bound on created_at. Exact also where the clock went backwards (see batches.py)."""
        with self._read() as conn:
            rows = newest_results(conn, since=since, stream=stream, limit=limit)
        return [result_dict(row) for row in rows]

    def query_events(self, *, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Stored events, newest first."""
        clause, params = (" WHERE kind = ?", [kind]) if kind else ("", [])
        with self._lock:
            rows = list(
                self.db.query(f"SELECT * FROM events{clause} ORDER BY id DESC LIMIT ?", [*params, int(limit)])
            )
        for row in rows:
            row["data"] = json.loads(row["data"]) if row["data"] is not None else None
        return rows

    def stats(self) -> StoreStats:
        with self._read() as conn:
            rows = {table: self.db.table(table).count for table in _TABLES}
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            page_count = int(conn.execute("PRAGMA page_count").fetchone()[0])
            freelist = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            version = read_schema_version(conn)
            evicted = conn.execute(
                "SELECT value FROM store_meta WHERE key = 'evicted_unsynced_total'"
            ).fetchone()
        backlog = self.outbox_backlog()
        wal = self.path.with_name(self.path.name + "-wal")
        return StoreStats(
            path=str(self.path),
            schema_version=version,
            size_bytes=disk_bytes(self.path),
            page_size=page_size,
            page_count=page_count,
            freelist=freelist,
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
            rows=rows,
            unsynced_results=backlog.get("results", 0),
            outbox_backlog=backlog,
            bytes_written_total=self._meter.total,
            bytes_written_per_hour=self._meter.per_hour(),
            bytes_written_source=self._meter.source,
            evicted_unsynced_total=int(evicted[0]) if evicted else 0,
        )

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
