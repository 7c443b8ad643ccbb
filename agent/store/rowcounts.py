"""Row counts of the history tables (results, metrics, events) without scanning them.

``SELECT count(*)`` is O(rows): on a store at its default soft cap (~2.4 M results) it reads the
whole ``results`` B-tree, 66-83 ms on x86 and several times that on a Pi, every health tick.
The three history tables are ``AUTOINCREMENT`` and nothing inserts an explicit id, so every row
inserted takes ``sqlite_sequence.seq + 1`` and raises ``seq`` by one; rows leave them only
through retention, which adds what each ``DELETE`` removed to ``store_meta.<table>_deleted_total``
in the same transaction (:func:`delete_rows`). Hence, exactly and in any snapshot::

    rows = seq - deleted_total

``sqlite_sequence`` and ``store_meta`` are ordinary tables, so a rolled-back insert or delete
takes its change to them back too. Migration 8 set ``deleted_total`` to ``seq - count(*)`` once
(it absorbs whatever gaps older stores had, e.g. a row inserted with an explicit id and deleted).
A backup copies both tables with the rows in one snapshot; a migration that rebuilds one of
these tables must keep ``seq`` and ``deleted_total`` in step with what it copies.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

__all__ = [
    "COUNTED_SINCE",
    "HISTORY_TABLES",
    "delete_rows",
    "history_rows",
    "miscounted",
    "recount",
    "table_rows",
]

HISTORY_TABLES = ("results", "metrics", "events")
COUNTED_SINCE = 8
"""The schema version (migration 8) from which stores keep these counters."""


def _key(table: str) -> str:
    return f"{table}_deleted_total"


def delete_rows(
    conn: sqlite3.Connection, table: str, sql: str, params: Sequence[Any] = (), *, many: bool = False
) -> int:
    """Run ``sql`` (a DELETE from ``table``; with ``many``, once per parameter set) and count the
    rows it removed in ``store_meta``; returns that number. Call it inside the write transaction."""
    if table not in HISTORY_TABLES:
        raise ValueError(f"{table!r} is not a history table ({', '.join(HISTORY_TABLES)})")
    cursor = conn.executemany(sql, params) if many else conn.execute(sql, params)
    n = int(cursor.rowcount)
    if n:
        conn.execute("UPDATE store_meta SET value = value + ? WHERE key = ?", (n, _key(table)))
    return n


def history_rows(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows now in each history table, in ``HISTORY_TABLES`` order: O(1), no table is read."""
    counts = {}
    for table in HISTORY_TABLES:
        row = conn.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0) "
            "- (SELECT value FROM store_meta WHERE key = ?2)",
            (table, _key(table)),
        ).fetchone()
        counts[table] = int(row[0])
    return counts


def table_rows(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows in every table that holds rows: the history tables' kept counts, and the outbox's
    ``count(*)`` (it holds only what is pending, so counting it stays cheap)."""
    rows = history_rows(conn)
    rows["outbox"] = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    return rows


def miscounted(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """The history tables whose kept count is not their ``count(*)``: ``{table: (kept, actual)}``.

    Scans every table (for ``store check`` and ``store vacuum``, never the health tick). Only rows
    deleted behind edgefleet's back (e.g. in the ``sqlite3`` shell) make a count wrong."""
    kept = history_rows(conn)
    wrong = {}
    for table in HISTORY_TABLES:
        actual = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        if actual != kept[table]:
            wrong[table] = (kept[table], actual)
    return wrong


def recount(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """Make every kept count ``count(*)`` again (inside a write transaction); returns what was
    wrong, as :func:`miscounted`."""
    wrong = miscounted(conn)
    for table, (kept, actual) in wrong.items():
        conn.execute("UPDATE store_meta SET value = value + ? WHERE key = ?", (kept - actual, _key(table)))
    return wrong
