"""Numbered schema migrations of the device store.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with the row that
records it in ``schema_version``, so a crash mid-migration leaves the previous version intact
and the next open simply tries again. Migrations only go forward; a store written by a newer
edgefleet is refused rather than guessed at.

To change the schema: append a ``Migration`` with the next number. Never edit a released one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgefleet.agent.store.codec import encode_outputs
from edgefleet.errors import StoreError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "migrate",
    "read_schema_version",
]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]


def _run(conn: sqlite3.Connection, statements: Sequence[str]) -> None:
    # conn.executescript() would COMMIT first and break the migration's transaction.
    for statement in statements:
        conn.execute(statement)


def _v1_initial(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        [
            """CREATE TABLE results (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                stream TEXT NOT NULL,
                window_start REAL NOT NULL,
                window_end REAL NOT NULL,
                model_name TEXT NOT NULL,
                model_version TEXT NOT NULL,
                label TEXT,
                score REAL,
                outputs TEXT,
                latency_ms REAL NOT NULL,
                answered_by TEXT NOT NULL DEFAULT 'edge' CHECK (answered_by IN ('edge', 'cloud')),
                fallback_reason TEXT,
                window_seq INTEGER,
                created_at REAL NOT NULL,
                synced_at REAL
            )""",
            "CREATE INDEX results_stream_created ON results(stream, created_at)",
            """CREATE TABLE metrics (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts REAL NOT NULL,
                name TEXT NOT NULL,
                value REAL NOT NULL,
                labels TEXT NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX metrics_name_ts ON metrics(name, ts)",
            """CREATE TABLE events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts REAL NOT NULL,
                kind TEXT NOT NULL,
                level TEXT NOT NULL,
                message TEXT NOT NULL,
                data TEXT
            )""",
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                priority INTEGER NOT NULL,
                created_at REAL NOT NULL,
                payload TEXT,
                first_result_id INTEGER,
                last_result_id INTEGER,
                approx_bytes INTEGER NOT NULL
            )""",
            "CREATE INDEX outbox_priority_id ON outbox(priority, id)",
        ],
    )


def _json_to_float64(text: str | None) -> bytes | None:
    if text is None:
        return None
    return encode_outputs([float(v) for v in json.loads(text)])


def _v2_packed_outputs_and_retention_indexes(conn: sqlite3.Connection) -> None:
    # JSON text spends ~20 bytes per float; packed float64 is 8 and round-trips exactly.
    # SQLite cannot change a column's type in place, so the table is rebuilt.
    conn.create_function("edgefleet_json_to_f64", 1, _json_to_float64, deterministic=True)
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'results'").fetchone()
    columns = (
        "id, stream, window_start, window_end, model_name, model_version, label, score, outputs, "
        "latency_ms, answered_by, fallback_reason, window_seq, created_at, synced_at"
    )
    _run(
        conn,
        [
            # The CHECKs let write_results bind values unconverted (fast) yet refuse wrong types.
            """CREATE TABLE results_v2 (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                stream TEXT NOT NULL CHECK (typeof(stream) = 'text' AND stream <> ''),
                window_start REAL NOT NULL CHECK (typeof(window_start) = 'real'),
                window_end REAL NOT NULL CHECK (typeof(window_end) = 'real'),
                model_name TEXT NOT NULL CHECK (typeof(model_name) = 'text' AND model_name <> ''),
                model_version TEXT NOT NULL CHECK (typeof(model_version) = 'text' AND model_version <> ''),
                label TEXT,
                score REAL CHECK (score IS NULL OR typeof(score) = 'real'),
                outputs BLOB,
                latency_ms REAL NOT NULL CHECK (typeof(latency_ms) = 'real'),
                answered_by TEXT NOT NULL DEFAULT 'edge' CHECK (answered_by IN ('edge', 'cloud')),
                fallback_reason TEXT,
                window_seq INTEGER CHECK (window_seq IS NULL OR typeof(window_seq) = 'integer'),
                created_at REAL NOT NULL CHECK (typeof(created_at) = 'real'),
                synced_at REAL
            )""",
            f"INSERT INTO results_v2 ({columns}) "
            f"SELECT {columns.replace('outputs', 'edgefleet_json_to_f64(outputs)')} FROM results ORDER BY id",
            "DROP TABLE results",
            "ALTER TABLE results_v2 RENAME TO results",
            "CREATE INDEX results_stream_created ON results(stream, created_at)",
            # Retention deletes synced rows by age and counts the unsynced backlog; both stay cheap.
            "CREATE INDEX results_created ON results(created_at)",
            "CREATE INDEX results_unsynced ON results(id) WHERE synced_at IS NULL",
            "CREATE INDEX metrics_ts ON metrics(ts)",
            "CREATE INDEX events_ts ON events(ts)",
            """CREATE TABLE store_meta (
                key TEXT PRIMARY KEY,
                value INTEGER NOT NULL
            )""",
            "INSERT INTO store_meta (key, value) VALUES ('evicted_unsynced_total', 0)",
        ],
    )
    if row is not None:
        # Ids are never reused (outbox items reference them): keep the high-water mark.
        conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'results'", (row[0],))


def _v3_one_results_time_index(conn: sqlite3.Connection) -> None:
    # Every result row paid for three secondary indexes; (stream, created_at) duplicated
    # (created_at) for the only queries there are - "newest results", optionally of one stream,
    # and retention's age cut - which (created_at) serves alone: the newest-first walk filters
    # the stream as it goes. One B-tree fewer per insert (~15-25 % of the store's insert cost).
    _run(conn, ["DROP INDEX IF EXISTS results_stream_created"])


def _v4_no_unsynced_index(conn: sqlite3.Connection) -> None:
    # The unsynced results are the id ranges of the pending "results" outbox items; the backlog
    # count and eviction now read those (one row per batch), so the partial index every new
    # result entered (~20 % of an insert's cost) has no reader left.
    _run(conn, ["DROP INDEX IF EXISTS results_unsynced"])


def _v5_result_batches_instead_of_time_index(conn: sqlite3.Connection) -> None:
    # results_created cost every stored result about a quarter of its insert CPU and ~20 bytes of
    # WAL. Its readers - newest-first queries and retention's age cut - only need to know which
    # id ranges can hold a given time: one row per write transaction now records its id range
    # and the least and greatest created_at in it. Bounds, not an order, so they stay right
    # whatever the clock did (a Pi without an RTC boots in the past and jumps when NTP syncs).
    # Existing rows get bounds per 256 ids; any grouping is correct, this one keeps them tight.
    _run(
        conn,
        [
            """CREATE TABLE result_batches (
                first_id INTEGER PRIMARY KEY,
                last_id INTEGER NOT NULL,
                min_created_at REAL NOT NULL,
                max_created_at REAL NOT NULL
            )""",
            "INSERT INTO result_batches (first_id, last_id, min_created_at, max_created_at) "
            "SELECT min(id), max(id), min(created_at), max(created_at) FROM results GROUP BY (id - 1) / 256",
            "DROP INDEX IF EXISTS results_created",
        ],
    )


def _v6_no_metrics_name_index(conn: sqlite3.Connection) -> None:
    # No query reads metrics by name (retention cuts by ts through metrics_ts; sync ships the
    # outbox copy). Each health tick put one entry per metric name into (name, ts): a different
    # leaf page per name once the table is a few hundred ticks old, ~20 of the ~27 pages a
    # tick appended to the WAL. Flash wear, not speed (docs/store.md, "Commit policy").
    _run(conn, ["DROP INDEX IF EXISTS metrics_name_ts"])


def _v7_cloud_answers_and_deferred_windows(conn: sqlite3.Connection) -> None:
    # Cloud fallback (issue 15): a result keeps the cloud's answer beside the edge one, and a
    # window the cloud could not answer in time waits in deferred_windows for a late answer.
    # Both are side tables keyed by the result id, not columns of results: a few percent of the
    # results have a cloud answer, and six more columns on results cost every result ~11 bytes
    # written (286 -> 297 bytes per result, bench/store_writer.py). Readers join them (rows.py).
    # Written compactly: SQLite keeps DDL text verbatim in sqlite_master, which must stay in page 1
    # (a schema spilling to a later page is unreadable once that page is damaged: store check).
    _run(
        conn,
        [
            "CREATE TABLE cloud_answers (result_id INTEGER PRIMARY KEY, label TEXT, score REAL, "
            "outputs BLOB, model_version TEXT, late INT NOT NULL)",
            # No index but the key: the table is capped (fallback.deferred_max_bytes), scans are short.
            "CREATE TABLE deferred_windows (result_id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, "
            "stream TEXT NOT NULL, window_seq INT, window_start REAL NOT NULL, window_end REAL NOT NULL, "
            "shape TEXT NOT NULL, data BLOB NOT NULL, nbytes INT NOT NULL, fallback_reason TEXT NOT NULL, "
            "created_at REAL NOT NULL, attempts INT NOT NULL DEFAULT 0, next_try_at REAL NOT NULL)",
            "INSERT INTO store_meta (key, value) VALUES ('deferred_dropped_total', 0)",
        ],
    )


def _v8_deleted_row_counters(conn: sqlite3.Connection) -> None:
    # count(*) reads a whole table: 66-83 ms per health tick for results at the default soft cap.
    # AUTOINCREMENT's seq counts the rows ever inserted; these count the rows ever deleted, so
    # rows = seq - deleted without a scan (agent/store/rowcounts.py). Set once from the real
    # count, which also absorbs any gap in the ids so far. Rows only; no DDL (page 1 stays small).
    for table in ("results", "metrics", "events"):
        conn.execute(
            "INSERT INTO store_meta (key, value) VALUES (?, coalesce("
            f"(SELECT seq FROM sqlite_sequence WHERE name = ?), 0) - (SELECT count(*) FROM {table}))",
            (f"{table}_deleted_total", table),
        )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "results, metrics, events, outbox", _v1_initial),
    Migration(
        2,
        "results.outputs as packed float64, type CHECKs; retention indexes; store_meta",
        _v2_packed_outputs_and_retention_indexes,
    ),
    Migration(
        3, "drop results_stream_created: results_created serves its queries", _v3_one_results_time_index
    ),
    Migration(4, "drop results_unsynced: the outbox's id ranges say what is unsynced", _v4_no_unsynced_index),
    Migration(
        5,
        "result_batches (id range, created_at bounds per write) instead of results_created",
        _v5_result_batches_instead_of_time_index,
    ),
    Migration(
        6,
        "drop metrics_name_ts: no reader, a page per metric name per health tick",
        _v6_no_metrics_name_index,
    ),
    Migration(
        7,
        "cloud_answers and deferred_windows beside results (cloud fallback, late answers)",
        _v7_cloud_answers_and_deferred_windows,
    ),
    Migration(
        8,
        "store_meta.<table>_deleted_total for results, metrics, events: row counts without a scan",
        _v8_deleted_row_counters,
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def read_schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in ``schema_version``; 0 for an empty database."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if has_table is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _refuse_newer(version: int, path: str | None) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {path or ''} has schema version {version}, newer than the {SCHEMA_VERSION} "
            "this edgefleet understands; refusing to downgrade it",
            path=path,
            hint="upgrade edgefleet to the version that wrote this store, or restore a backup made "
            "by this version (edgefleet store restore)",
        )


def migrate(conn: sqlite3.Connection, *, target: int = SCHEMA_VERSION, path: str | None = None) -> list[int]:
    """Bring the schema forward to ``target``; return the versions applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``) so the transactions here are
    the only ones. Safe against concurrent openers: the version is re-read under the write lock.
    """
    if target > SCHEMA_VERSION or target < 0:
        raise ValueError(f"target schema version must be 0..{SCHEMA_VERSION}, got {target}")
    _refuse_newer(read_schema_version(conn), path)
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL, description TEXT NOT NULL)"
            )
            current = read_schema_version(conn)
            _refuse_newer(current, path)
            if current >= migration.version:
                conn.execute("COMMIT")
                continue
            migration.apply(conn)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at, description) VALUES (?, ?, ?)",
                (migration.version, time.time(), migration.description),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied
