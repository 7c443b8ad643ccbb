"""Deferred windows: windows the cloud could not answer in time, kept for a late answer.

A window whose live cloud request timed out, could not be published (offline) or was held back
by the budget is stored with its edge answer *and* its samples (``deferred_windows``, schema v7),
in one transaction, so neither can exist without the other. The samples wait, within
``max_bytes`` (oldest dropped first and counted in ``store_meta.deferred_dropped_total``), until
:mod:`edgefleet.agent.fallback_deferred` sends them again; the cloud's late answer is then attached
to the **same** result (a ``cloud_answers`` row keyed by its id, ``late = 1``; readers see it as
columns of the result, see ``rows.SELECT_RESULT_READ``) and queued for the controller as one
``result_update`` outbox item, in one transaction that also deletes the deferred row - so a
second answer for the same window finds nothing and changes nothing.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgefleet.agent.store.batches import record_bounds
from edgefleet.agent.store.codec import encode_outputs
from edgefleet.agent.store.outbox import enqueue_in
from edgefleet.agent.store.records import PRIORITY_RESULTS, ResultRecord
from edgefleet.agent.store.rows import check_record, converted_rows, insert_results_statement
from edgefleet.errors import StoreError

if TYPE_CHECKING:
    from edgefleet.agent.store.store import Store

__all__ = [
    "CloudAnswer",
    "DeferredStats",
    "DeferredStore",
    "DeferredWindow",
    "KeptWindow",
    "deferred_request_id",
]

_RESULT_ROW_BYTES = 160  # as store.py: only sizes sync batches
_DEFERRED_ID = re.compile(r"^deferred-(\d+)-[0-9a-f]+$")


def deferred_request_id(result_id: int, nonce: str) -> str:
    """The request id of a deferred resend: names its result, so an answer to any attempt (even
    from before a restart) finds the window it belongs to."""
    return f"deferred-{result_id}-{nonce}"


@dataclass(frozen=True)
class DeferredWindow:
    """One kept window, as the sender reads it back."""

    id: int
    result_id: int
    request_id: str
    stream: str
    window_seq: int | None
    window_start: float
    window_end: float
    shape: tuple[int, ...]
    data: bytes
    """Little-endian float32 samples, as ``infer/request`` carries them."""
    fallback_reason: str
    attempts: int


@dataclass(frozen=True)
class KeptWindow:
    """An edge answer to store with the window it answered, for a late cloud answer."""

    record: ResultRecord
    request_id: str
    """The live request's id: its answer, arriving after the deadline, is still attached."""
    shape: tuple[int, ...]
    data: bytes


@dataclass(frozen=True)
class CloudAnswer:
    """The cloud's answer to a window, attached to its stored result."""

    label: str | None
    score: float | None
    outputs: list[float] | None
    model_version: str | None


@dataclass(frozen=True)
class DeferredStats:
    windows: int
    bytes: int
    dropped_total: int


class DeferredStore:
    """The deferred-window half of a :class:`~edgefleet.agent.store.Store` (same connection and lock)."""

    def __init__(self, store: Store, *, max_bytes: int) -> None:
        if max_bytes < 0:
            raise StoreError(
                f"deferred window cap must be >= 0 bytes, got {max_bytes}",
                hint="set fallback.deferred_max_bytes to 0 (off) or a byte count",
            )
        self.store = store
        self.max_bytes = max_bytes

    def keep(
        self,
        record: ResultRecord,
        *,
        request_id: str,
        shape: tuple[int, ...],
        data: bytes,
        now: float | None = None,
    ) -> tuple[int, int]:
        """:meth:`keep_many` of one window: ``(result id, windows dropped)``."""
        ids, dropped = self.keep_many([KeptWindow(record, request_id, shape, data)], now=now)
        return ids[0], dropped

    def keep_many(self, kept: Sequence[KeptWindow], *, now: float | None = None) -> tuple[list[int], int]:
        """Store the edge answers and their windows in one transaction (one outbox item).

        Returns ``(result ids, windows dropped to stay under max_bytes)``; a new window is dropped
        too (its result kept, not deferred) when it alone is over the cap. Raises StoreError naming
        the first record the results table would refuse; nothing is written then.
        """
        if not kept:
            return [], 0
        for index, item in enumerate(kept):
            problem = check_record(item.record)
            if problem is not None:
                raise StoreError(
                    f"cannot defer result {index} of {len(kept)}: {problem}",
                    hint="this is a bug in the caller",
                )
        now = time.time() if now is None else now
        raw = self.store.config.store_raw_outputs
        records = [item.record for item in kept]
        sql, params = insert_results_statement(converted_rows(records, raw_outputs=raw), raw_outputs=raw)

        def insert() -> tuple[list[int], int]:
            with self.store._write("defer windows") as conn:
                last = int(conn.execute(sql, params).lastrowid or 0)
                first = last - len(kept) + 1  # one writer, AUTOINCREMENT: contiguous (as store.py)
                conn.execute(
                    "INSERT INTO outbox (kind, priority, created_at, payload, first_result_id, "
                    "last_result_id, approx_bytes) VALUES ('results', ?, ?, NULL, ?, ?, ?)",
                    (PRIORITY_RESULTS, now, first, last, _RESULT_ROW_BYTES * len(kept)),
                )
                record_bounds(conn, first, last)
                _forget_removed_results(conn)
                conn.executemany(
                    "INSERT INTO deferred_windows (result_id, request_id, stream, window_seq, window_start, "
                    "window_end, shape, data, nbytes, fallback_reason, created_at, next_try_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            first + i,
                            item.request_id,
                            item.record.stream,
                            None if item.record.window_seq is None else int(item.record.window_seq),
                            float(item.record.window_start),
                            float(item.record.window_end),
                            json.dumps(list(item.shape)),
                            item.data,
                            len(item.data),
                            item.record.fallback_reason or "",
                            now,
                            now,
                        )
                        for i, item in enumerate(kept)
                    ],
                )
                return list(range(first, last + 1)), _trim(conn, self.max_bytes)

        return self.store._with_space(insert)

    def attach(self, request_id: str, answer: CloudAnswer) -> int | None:
        """Write ``answer`` onto the result deferred under ``request_id`` (marked late), queue the
        update for the controller and forget the window; returns the result id, or None when no
        window waits under that id (unknown, already answered, or dropped)."""
        match = _DEFERRED_ID.match(request_id)
        by_result = int(match.group(1)) if match else -1
        with self.store._write("attach a late cloud answer") as conn:
            row = conn.execute(
                "SELECT result_id, result_id FROM deferred_windows WHERE request_id = ? OR result_id = ?",
                (request_id, by_result),
            ).fetchone()
            if row is None:
                return None
            deferred_id, result_id = int(row[0]), int(row[1])
            conn.execute("DELETE FROM deferred_windows WHERE result_id = ?", (deferred_id,))
            edge = conn.execute(
                "SELECT stream, window_seq, window_end, label, fallback_reason, model_version "
                "FROM results WHERE id = ?",
                (result_id,),
            ).fetchone()
            if edge is None:
                return None  # retention removed the result meanwhile: nothing to improve
            conn.execute(
                "INSERT INTO cloud_answers (result_id, label, score, outputs, model_version, late) "
                "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (result_id) DO NOTHING",
                (
                    result_id,
                    answer.label,
                    None if answer.score is None else float(answer.score),
                    encode_outputs(answer.outputs) if self.store.config.store_raw_outputs else None,
                    answer.model_version,
                ),
            )
            update: dict[str, Any] = {
                "result_id": result_id,
                "stream": edge[0],
                "window_seq": edge[1],
                "window_end": edge[2],
                "edge_label": edge[3],
                "edge_model_version": edge[5],
                "fallback_reason": edge[4],
                "cloud_label": answer.label,
                "cloud_score": answer.score,
                "cloud_model_version": answer.model_version,
            }
            enqueue_in(conn, "result_update", json.dumps(update), PRIORITY_RESULTS)
        return result_id

    def knows(self, request_id: str) -> bool:
        """A window waits under ``request_id`` (exactly, or as one of its resends)."""
        match = _DEFERRED_ID.match(request_id)
        with self.store._read() as conn:
            row = conn.execute(
                "SELECT 1 FROM deferred_windows WHERE request_id = ? OR result_id = ?",
                (request_id, int(match.group(1)) if match else -1),
            ).fetchone()
        return row is not None

    def due(self, *, limit: int, now: float | None = None) -> list[DeferredWindow]:
        """Up to ``limit`` windows whose next try is due, oldest first."""
        now = time.time() if now is None else now
        with self.store._read() as conn:
            rows = conn.execute(
                "SELECT result_id, result_id, request_id, stream, window_seq, window_start, window_end, "
                "shape, data, fallback_reason, attempts FROM deferred_windows WHERE next_try_at <= ? "
                "ORDER BY result_id LIMIT ?",
                (now, max(int(limit), 0)),
            ).fetchall()
        return [
            DeferredWindow(
                int(r[0]),
                int(r[1]),
                str(r[2]),
                str(r[3]),
                r[4],
                float(r[5]),
                float(r[6]),
                tuple(int(v) for v in json.loads(r[7])),
                bytes(r[8]),
                str(r[9]),
                int(r[10]),
            )
            for r in rows
        ]

    def sent(self, deferred_id: int, request_id: str, *, retry_at: float) -> None:
        """A resend went out under ``request_id``; try again at ``retry_at`` if no answer came."""
        with self.store._write("record a deferred resend") as conn:
            conn.execute(
                "UPDATE deferred_windows SET request_id = ?, attempts = attempts + 1, next_try_at = ? "
                "WHERE result_id = ?",
                (request_id, retry_at, deferred_id),
            )

    def postpone(self, deferred_id: int, *, retry_at: float) -> None:
        with self.store._write("postpone a deferred window") as conn:
            conn.execute(
                "UPDATE deferred_windows SET next_try_at = ? WHERE result_id = ?", (retry_at, deferred_id)
            )

    def give_up(self, deferred_id: int) -> bool:
        """Forget a window the cloud keeps refusing; its result stays the edge answer. Counted as dropped."""
        with self.store._write("give up a deferred window") as conn:
            return _drop(conn, [deferred_id]) == 1

    def stats(self) -> DeferredStats:
        with self.store._read() as conn:
            count, total = conn.execute(
                "SELECT count(*), coalesce(sum(nbytes), 0) FROM deferred_windows"
            ).fetchone()
            dropped = conn.execute(
                "SELECT value FROM store_meta WHERE key = 'deferred_dropped_total'"
            ).fetchone()
        return DeferredStats(int(count), int(total), int(dropped[0]) if dropped else 0)


def _drop(conn: sqlite3.Connection, ids: list[int]) -> int:
    """Delete deferred windows ``ids``; their results stay, as plain edge answers. Counted."""
    if not ids:
        return 0
    marks = ", ".join("?" * len(ids))
    dropped = conn.execute(f"DELETE FROM deferred_windows WHERE result_id IN ({marks})", ids).rowcount
    conn.execute("UPDATE store_meta SET value = value + ? WHERE key = 'deferred_dropped_total'", (dropped,))
    return int(dropped)


def _forget_removed_results(conn: sqlite3.Connection) -> None:
    """Drop side rows whose results retention deleted (it deletes oldest first, by id ranges).

    Run on the (rare) deferred writes rather than in retention: two key-range deletes."""
    low = conn.execute("SELECT min(id) FROM results").fetchone()[0]
    if low is not None:
        conn.execute("DELETE FROM cloud_answers WHERE result_id < ?", (low,))
        conn.execute("DELETE FROM deferred_windows WHERE result_id < ?", (low,))


def _trim(conn: sqlite3.Connection, max_bytes: int) -> int:
    """Drop the oldest windows until the rest fit in ``max_bytes``; returns how many."""
    rows = conn.execute("SELECT result_id, nbytes FROM deferred_windows ORDER BY result_id DESC").fetchall()
    kept = 0
    full = False
    drop: list[int] = []
    for deferred_id, nbytes in rows:  # newest first: keep the newest that fit
        if not full and kept + int(nbytes) <= max_bytes:
            kept += int(nbytes)
            continue
        drop.append(int(deferred_id))
        # One window bigger than the whole cap is dropped alone; otherwise the rest is older.
        full = full or kept > 0
    return _drop(conn, drop)
