"""The outbox half of the store: queueing, peeking, acknowledging, and the writes held back.

The functions take a connection inside the caller's transaction (``Store`` holds the lock and
opens it). :class:`HeldWrites` keeps the small writes a running agent makes between two
result commits - outbox acknowledgements and telemetry samples - so that they go into the next
commit-interval transaction instead of each costing a transaction (and a few WAL pages) of its
own. See "Commit policy" in ``docs/store.md``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgefleet.agent.store.records import PRIORITY_TELEMETRY, OutboxItem
from edgefleet.agent.store.rows import SELECT_RESULT, result_dict

__all__ = ["HeldWrites", "ack", "backlog", "count_present", "enqueue_in", "peek"]

_IN_CHUNK = 500


def enqueue_in(conn: sqlite3.Connection, kind: str, payload: str, priority: int) -> int:
    cursor = conn.execute(
        "INSERT INTO outbox (kind, priority, created_at, payload, approx_bytes) VALUES (?, ?, ?, ?, ?)",
        (kind, priority, time.time(), payload, len(payload)),
    )
    return int(cursor.lastrowid or 0)


def _not_in(skip: Collection[int]) -> tuple[str, list[int]]:
    if not skip:
        return "", []
    return f" AND id NOT IN ({', '.join('?' * len(skip))})", list(skip)


def peek(
    conn: sqlite3.Connection,
    limit: int,
    *,
    max_bytes: int | None,
    held: Collection[int] = (),
    skip: Container[int] = (),
) -> list[OutboxItem]:
    """The next pending items (priority, then id), leaving out ``held`` (acknowledged, held for
    the next commit: not pending any more) and ``skip`` (sent, awaiting the controller's
    acknowledgement: still pending, so they count towards ``limit`` but are not read)."""
    items: list[OutboxItem] = []
    total = 0
    clause, params = _not_in(held)
    rows = conn.execute(
        "SELECT id, kind, priority, created_at, payload, first_result_id, last_result_id, "
        f"approx_bytes FROM outbox WHERE 1{clause} ORDER BY priority, id LIMIT ?",
        (*params, max(int(limit), 0)),
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


def ack(conn: sqlite3.Connection, ids: Sequence[int], *, now: float | None = None) -> int:
    """Delete the items ``ids`` and mark the results they reference synced; returns items removed."""
    removed = 0
    now = time.time() if now is None else now
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        ranges = conn.execute(
            f"SELECT first_result_id, last_result_id FROM outbox WHERE kind = 'results' AND id IN ({marks})",
            chunk,
        ).fetchall()
        conn.executemany(
            "UPDATE results SET synced_at = ? WHERE id BETWEEN ? AND ? AND synced_at IS NULL",
            [(now, first, last) for first, last in ranges],
        )
        removed += conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
    return removed


def count_present(conn: sqlite3.Connection, ids: Sequence[int]) -> int:
    found = 0
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        found += int(conn.execute(f"SELECT count(*) FROM outbox WHERE id IN ({marks})", chunk).fetchone()[0])
    return found


def backlog(conn: sqlite3.Connection, *, skip: Collection[int] = ()) -> dict[str, int]:
    """Pending items per kind (``results`` counted in rows), leaving out ``skip``."""
    clause, params = _not_in(skip)
    counts = {
        str(kind): int(n)
        for kind, n in conn.execute(
            f"SELECT kind, count(*) FROM outbox WHERE kind != 'results'{clause} GROUP BY kind ORDER BY kind",
            params,
        )
    }
    # The unsynced results are exactly the id ranges of the pending results items (a write adds
    # rows and their item together, an ack syncs a range and drops its item, eviction trims
    # both): one row per batch to add up, not a count over every unsynced result.
    unsynced = int(
        conn.execute(
            "SELECT coalesce(sum(last_result_id - first_result_id + 1), 0) FROM outbox "
            f"WHERE kind = 'results'{clause}",
            params,
        ).fetchone()[0]
    )
    if unsynced:
        counts["results"] = unsynced
    return counts


@dataclass
class _Held:
    acks: list[int] = field(default_factory=list)
    metrics: list[tuple[list[tuple[float, str, float, str]], str]] = field(default_factory=list)
    since: float | None = None


class HeldWrites:
    """Acknowledgements and telemetry waiting for the next commit; thread-safe.

    Held only while a committer (the agent's result writer) has switched holding on with a
    commit interval; otherwise every write goes straight to SQLite as before. Held
    acknowledgements are hidden from ``peek`` and ``backlog`` at once, so sync never sends an
    acknowledged item again; a power cut before their commit only means those items are sent
    again, which the controller's de-duplication makes harmless.
    """

    MAX_ACKS = 2000
    """Held acknowledgements beyond which the next write commits them at once (NOT IN stays short)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = _Held()
        self._acked: set[int] = set()
        self.interval_s: float | None = None

    @property
    def holding(self) -> bool:
        return self.interval_s is not None

    def acked(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._acked)

    def add_acks(self, ids: Iterable[int]) -> list[int]:
        """Hold ``ids``; returns those not held already."""
        with self._lock:
            new = [i for i in ids if i not in self._acked]
            self._acked.update(new)
            self._held.acks.extend(new)
            if new and self._held.since is None:
                self._held.since = time.monotonic()
            return new

    def add_metrics(self, rows: list[tuple[float, str, float, str]], payload: str) -> None:
        with self._lock:
            self._held.metrics.append((rows, payload))
            if self._held.since is None:
                self._held.since = time.monotonic()

    def due(self) -> bool:
        """Something has been held for a commit interval, or too many acknowledgements are held."""
        with self._lock:
            since = self._held.since
            if since is None:
                return False
            interval = self.interval_s or 0.0
            return len(self._held.acks) >= self.MAX_ACKS or time.monotonic() - since >= interval

    def __bool__(self) -> bool:
        with self._lock:
            return self._held.since is not None

    def take(self) -> _Held:
        """Everything held, for the caller's transaction; give it back with :meth:`restore` on failure."""
        with self._lock:
            held, self._held = self._held, _Held()
            return held

    def restore(self, held: _Held) -> None:
        """A transaction that carried ``held`` rolled back: hold it again, ahead of newer writes."""
        with self._lock:
            self._held.acks[:0] = held.acks
            self._held.metrics[:0] = held.metrics
            if held.since is not None:
                self._held.since = min(held.since, self._held.since or held.since)

    def committed(self, held: _Held) -> None:
        with self._lock:
            self._acked.difference_update(held.acks)

    @staticmethod
    def apply(conn: sqlite3.Connection, held: _Held) -> None:
        """Write ``held`` in the caller's transaction."""
        if held.acks:
            ack(conn, held.acks)
        for rows, payload in held.metrics:
            conn.executemany("INSERT INTO metrics (ts, name, value, labels) VALUES (?, ?, ?, ?)", rows)
            enqueue_in(conn, "telemetry", payload, PRIORITY_TELEMETRY)
