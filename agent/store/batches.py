"""``result_batches``: the created_at bounds of each write, and the time queries that use them.

``results`` has no index on created_at (schema v5): it cost every stored result about a quarter
of its insert. Results are stored in id order, but created_at need not follow it - a Pi without
an RTC boots with a stale clock and jumps when NTP syncs, cloud answers carry their own times -
so instead each write transaction records its id range and the least and greatest created_at in
it. These are bounds: deleting rows leaves them true, so only inserts maintain them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from edgefleet.agent.store.rows import RESULT_COLUMNS, SELECT_RESULT_READ

__all__ = ["BATCH_ROWS", "newest_results", "record_bounds"]

BATCH_ROWS = 256
"""Ids one bounds row covers at most when small writes are merged into it."""

_NEW_ROWS = "FROM results WHERE id BETWEEN ?1 AND ?2"
# Where created_at sits in a SELECT_RESULT(_READ) row (after the id).
_CREATED_AT = 1 + RESULT_COLUMNS.index("created_at")


def record_bounds(conn: sqlite3.Connection, first: int, last: int) -> None:
    """Record the created_at bounds of results ``first``..``last``, in the caller's transaction.

    The bounds are read back from SQLite: they hold what was stored (ints, numeric text made
    REAL) and cost no Python per row. A write of fewer than BATCH_ROWS rows widens the newest
    bounds row while it covers at most BATCH_ROWS ids: a quiet agent commits a few results at a
    time, and one row per write would make the table as long as results.
    """
    merged = 0
    if last - first + 1 < BATCH_ROWS:
        merged = conn.execute(
            "UPDATE result_batches SET last_id = ?2, "
            f"min_created_at = min(min_created_at, (SELECT min(created_at) {_NEW_ROWS})), "
            f"max_created_at = max(max_created_at, (SELECT max(created_at) {_NEW_ROWS})) "
            "WHERE first_id = (SELECT max(first_id) FROM result_batches) AND ?2 - first_id < ?3",
            (first, last, BATCH_ROWS),
        ).rowcount
    if not merged:
        conn.execute(
            "INSERT INTO result_batches (first_id, last_id, min_created_at, max_created_at) "
            f"SELECT ?1, ?2, min(created_at), max(created_at) {_NEW_ROWS}",
            (first, last),
        )


def _newest_first(row: tuple[Any, ...]) -> tuple[float, int]:
    return row[_CREATED_AT], row[0]


def newest_results(
    conn: sqlite3.Connection, *, since: float | None, stream: str | None, limit: int
) -> list[tuple[Any, ...]]:
    """SELECT_RESULT_READ rows, newest created_at first (then id), at most ``limit``.

    Walks the bounds rows from the greatest max_created_at down, reads each one's results by
    rowid range, and stops once no bounds row left can hold a result newer than the ``limit``
    found. Exact whatever order the clock wrote them in; with the clock going forward it reads
    about ``limit / 256 + 1`` ranges. Run it inside a read transaction for a consistent answer.
    """
    limit = max(int(limit), 0)
    if limit == 0:
        return []
    where = ["results.id BETWEEN ? AND ?"]
    extra: list[Any] = []
    batches_sql = "SELECT first_id, last_id, max_created_at FROM result_batches"
    batch_params: list[Any] = []
    if since is not None:
        where.append("results.created_at >= ?")
        extra.append(float(since))
        batches_sql += " WHERE max_created_at >= ?"
        batch_params.append(float(since))
    if stream is not None:
        where.append("results.stream = ?")
        extra.append(stream)
    batches_sql += " ORDER BY max_created_at DESC, first_id DESC"
    rows_sql = f"{SELECT_RESULT_READ} WHERE {' AND '.join(where)}"
    found: list[tuple[Any, ...]] = []
    for first, last, newest in conn.execute(batches_sql, batch_params):
        if len(found) >= limit and newest < found[limit - 1][_CREATED_AT]:
            break
        found.extend(conn.execute(rows_sql, (first, last, *extra)))
        found.sort(key=_newest_first, reverse=True)
        del found[limit:]
    return found
