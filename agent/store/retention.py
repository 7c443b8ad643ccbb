"""Retention: keep the store under its size caps and age limit, and give the space back.

Order of deletion, each step only while still needed:

1. age: synced results, metrics and events older than ``max_age_s``;
2. soft cap (``max_bytes``): more synced rows, oldest first across the three tables;
3. hard cap (``hard_max_bytes``): unsynced results, oldest first, then other pending outbox
   items (telemetry before events), oldest first. The caller counts these and raises an event.

Freed pages are then returned to the filesystem with ``PRAGMA incremental_vacuum`` (the store is
created with ``auto_vacuum=INCREMENTAL``) in bounded steps, each followed by a
``wal_checkpoint(TRUNCATE)``, so neither the main file nor the WAL grows while shrinking.
Sizes are judged on the pages in use (page_count - freelist) so the decision does not depend on
whether a vacuum already ran.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.agent.store.config import StoreConfig
from edgefleet.agent.store.rowcounts import delete_rows, table_rows

__all__ = ["RetentionReport", "disk_bytes", "enforce_retention", "used_bytes"]

_AGE_CHUNK_ROWS = 5000
_MIN_CHUNK_ROWS = 8
_MAX_CHUNK_ROWS = 20000
_VACUUM_STEP_PAGES = 2048

# Synced-history tables and the column that orders them by age. Metrics and events rows are local
# history: what sync still needs of them is a copy in the outbox. Rows leave these tables only
# through rowcounts.delete_rows, which keeps their row counts (Store.stats() reads those).
_HISTORY = {
    "results": ("created_at", "synced_at IS NOT NULL"),
    "metrics": ("ts", "1"),
    "events": ("ts", "1"),
}


@dataclass
class RetentionReport:
    """What one retention pass deleted and how the file size changed."""

    ran_at: float
    deleted_by_age: dict[str, int] = field(default_factory=dict)
    deleted_for_size: dict[str, int] = field(default_factory=dict)
    evicted_unsynced: dict[str, int] = field(default_factory=dict)
    """Unsynced data lost to the hard cap: ``{"results": rows, "<outbox kind>": items}``."""
    used_bytes_before: int = 0
    used_bytes_after: int = 0
    disk_bytes_before: int = 0
    disk_bytes_after: int = 0
    vacuumed_pages: int = 0

    @property
    def evicted_unsynced_total(self) -> int:
        return sum(self.evicted_unsynced.values())

    @property
    def deleted_total(self) -> int:
        return (
            sum(self.deleted_by_age.values())
            + sum(self.deleted_for_size.values())
            + self.evicted_unsynced_total
        )


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of pages holding data: what the file shrinks to after a full incremental vacuum."""
    pages = _pragma_int(conn, "page_count") - _pragma_int(conn, "freelist_count")
    return pages * _pragma_int(conn, "page_size")


def disk_bytes(path: Path) -> int:
    """The database file plus its WAL, as they occupy the disk now."""
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal")):
        with suppress(FileNotFoundError):
            total += os.path.getsize(candidate)
    return total


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _add(counts: dict[str, int], key: str, n: int) -> None:
    if n:
        counts[key] = counts.get(key, 0) + n


def _delete_by_age(conn: sqlite3.Connection, cutoff: float, report: RetentionReport) -> None:
    _delete_results_by_age(conn, cutoff, report)
    for table, (ts_column, _) in _HISTORY.items():
        if table == "results":
            continue
        while True:
            with _transaction(conn):
                n = delete_rows(
                    conn,
                    table,
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {ts_column} < ? LIMIT ?)",
                    (cutoff, _AGE_CHUNK_ROWS),
                )
            _add(report.deleted_by_age, table, n)
            if n < _AGE_CHUNK_ROWS:
                break


def _delete_results_by_age(conn: sqlite3.Connection, cutoff: float, report: RetentionReport) -> None:
    """Synced results older than ``cutoff``, looked for only in the write batches that can hold
    one (results has no created_at index: ``result_batches`` bounds each batch's created_at)."""
    ranges = conn.execute(
        "SELECT first_id, last_id FROM result_batches WHERE min_created_at < ? ORDER BY first_id", (cutoff,)
    ).fetchall()
    start = 0
    while start < len(ranges):
        end, ids = start, 0
        while end < len(ranges) and ids < _AGE_CHUNK_ROWS:  # about a chunk of rows per transaction
            ids += ranges[end][1] - ranges[end][0] + 1
            end += 1
        with _transaction(conn):
            n = delete_rows(
                conn,
                "results",
                "DELETE FROM results WHERE id BETWEEN ? AND ? AND created_at < ? AND synced_at IS NOT NULL",
                [(first, last, cutoff) for first, last in ranges[start:end]],
                many=True,
            )
        _add(report.deleted_by_age, "results", n)
        start = end


def _forget_emptied_batches(conn: sqlite3.Connection) -> None:
    # Bounds of deleted rows are harmless (a query finds nothing in their range), but without this
    # result_batches would grow for ever.
    with _transaction(conn):
        conn.execute(
            "DELETE FROM result_batches WHERE NOT EXISTS "
            "(SELECT 1 FROM results WHERE id BETWEEN result_batches.first_id AND result_batches.last_id)"
        )


def _rows_for(conn: sqlite3.Connection, excess: int) -> int:
    """How many rows to delete to free about ``excess`` bytes, from the average row size."""
    rows = sum(table_rows(conn).values())  # no scan of the history tables (rowcounts.py)
    per_row = max(used_bytes(conn) / max(rows, 1), 1.0)
    return min(max(math.ceil(excess / per_row * 1.1), _MIN_CHUNK_ROWS), _MAX_CHUNK_ROWS)


def _oldest_history_table(conn: sqlite3.Connection) -> str | None:
    oldest: tuple[float, str] | None = None
    for table, (ts_column, deletable) in _HISTORY.items():
        row = conn.execute(
            f"SELECT {ts_column} FROM {table} WHERE {deletable} ORDER BY id LIMIT 1"
        ).fetchone()
        if row is not None and (oldest is None or row[0] < oldest[0]):
            oldest = (float(row[0]), table)
    return None if oldest is None else oldest[1]


def _delete_synced_for_size(conn: sqlite3.Connection, target: int, report: RetentionReport) -> None:
    while (excess := used_bytes(conn) - target) > 0:
        table = _oldest_history_table(conn)
        if table is None:
            return
        _, deletable = _HISTORY[table]
        with _transaction(conn):
            n = delete_rows(
                conn,
                table,
                f"DELETE FROM {table} WHERE id IN "
                f"(SELECT id FROM {table} WHERE {deletable} ORDER BY id LIMIT ?)",
                (_rows_for(conn, excess),),
            )
        _add(report.deleted_for_size, table, n)


def _oldest_unsynced_upto(conn: sqlite3.Connection, limit: int) -> int | None:
    """The id up to which the ``limit`` oldest unsynced results lie, or None when there are none.

    The unsynced results are exactly the id ranges of the pending "results" outbox items (see
    ``Store.outbox_backlog``), so walking those - one row per batch - needs no index on synced_at.
    """
    if limit <= 0:
        return None
    upto: int | None = None
    left = limit
    ranges = conn.execute(
        "SELECT first_result_id, last_result_id FROM outbox WHERE kind = 'results' ORDER BY first_result_id"
    ).fetchall()
    for first, last in ranges:
        size = int(last) - int(first) + 1
        if size >= left:
            return int(first) + left - 1
        left -= size
        upto = int(last)
    return upto


def _evict_unsynced_results(conn: sqlite3.Connection, limit: int) -> int:
    upto = _oldest_unsynced_upto(conn, limit)
    if upto is None:
        return 0
    n = delete_rows(conn, "results", "DELETE FROM results WHERE synced_at IS NULL AND id <= ?", (upto,))
    # Outbox items reference id ranges: drop the ranges now empty, trim the one cut in two.
    conn.execute("DELETE FROM outbox WHERE kind = 'results' AND last_result_id <= ?", (upto,))
    conn.execute(
        "UPDATE outbox SET approx_bytes = approx_bytes * (last_result_id - ?) "
        "/ (last_result_id - first_result_id + 1), first_result_id = ? "
        "WHERE kind = 'results' AND first_result_id <= ?",
        (upto, upto + 1, upto),
    )
    return int(n)


def _evict_pending_items(conn: sqlite3.Connection, limit: int, report: RetentionReport) -> int:
    rows = conn.execute(
        "SELECT id, kind FROM outbox WHERE kind != 'results' ORDER BY priority DESC, id LIMIT ?", (limit,)
    ).fetchall()
    for item_id, kind in rows:
        conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))
        _add(report.evicted_unsynced, str(kind), 1)
    return len(rows)


def _evict_unsynced(conn: sqlite3.Connection, target: int, report: RetentionReport) -> None:
    while (excess := used_bytes(conn) - target) > 0:
        limit = _rows_for(conn, excess)
        with _transaction(conn):
            n = _evict_unsynced_results(conn, limit)
            _add(report.evicted_unsynced, "results", n)
            if n == 0:
                n = _evict_pending_items(conn, limit, report)
        if n == 0:
            return


def _vacuum(conn: sqlite3.Connection, report: RetentionReport) -> None:
    while _pragma_int(conn, "freelist_count") > 0:
        before = _pragma_int(conn, "page_count")
        # executescript() steps the pragma to completion; execute() would free a single page.
        conn.executescript(f"PRAGMA incremental_vacuum({_VACUUM_STEP_PAGES});")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        freed = before - _pragma_int(conn, "page_count")
        report.vacuumed_pages += freed
        if freed <= 0:
            break


def enforce_retention(
    conn: sqlite3.Connection, path: Path, config: StoreConfig, *, now: float | None = None
) -> RetentionReport:
    """Run one retention pass on an autocommit-mode connection (see the module docstring)."""
    now = time.time() if now is None else now
    report = RetentionReport(ran_at=now)
    report.used_bytes_before = used_bytes(conn)
    report.disk_bytes_before = disk_bytes(path)
    if config.max_age_s is not None:
        _delete_by_age(conn, now - config.max_age_s, report)
    over_cap = report.used_bytes_before > config.max_bytes or used_bytes(conn) > config.max_bytes
    if used_bytes(conn) > config.max_bytes:
        _delete_synced_for_size(conn, int(config.max_bytes * (1 - config.retention_headroom)), report)
    if used_bytes(conn) > config.hard_max_bytes:
        _evict_unsynced(conn, int(config.hard_max_bytes * (1 - config.retention_headroom)), report)
    if any(
        "results" in counts
        for counts in (report.deleted_by_age, report.deleted_for_size, report.evicted_unsynced)
    ):
        _forget_emptied_batches(conn)
    free_bytes = _pragma_int(conn, "freelist_count") * _pragma_int(conn, "page_size")
    if over_cap or (report.deleted_total and free_bytes >= config.vacuum_min_free_bytes):
        _vacuum(conn, report)
    report.used_bytes_after = used_bytes(conn)
    report.disk_bytes_after = disk_bytes(path)
    return report
