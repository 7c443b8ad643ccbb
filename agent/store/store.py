"""``Store``: the agent's local SQLite store and the outbox that sync drains.

Results, metrics, events and the outbox; transactions, retention and the rest of the upkeep
live in :mod:`edgefleet.agent.store.core`, the outbox queries in
:mod:`edgefleet.agent.store.outbox`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Container, Iterable, Sequence
from typing import Any

from edgefleet.agent.store import outbox
from edgefleet.agent.store.batches import newest_results, record_bounds
from edgefleet.agent.store.core import StoreCore
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
from edgefleet.agent.store.retention import disk_bytes
from edgefleet.agent.store.rowcounts import recount, table_rows
from edgefleet.agent.store.rows import (
    RESULT_COLUMNS,
    check_record,
    converted_rows,
    insert_results_statement,
    record_from_row,
    result_dict,
    result_rows,
)
from edgefleet.errors import StoreError

__all__ = ["EVENT_LEVELS", "Store"]

log = logging.getLogger(__name__)

EVENT_LEVELS = ("debug", "info", "warning", "error", "critical")

# Rough wire size of one result row without its outputs; sync only uses it to cap a batch.
_RESULT_ROW_BYTES = 160


class Store(StoreCore):
    """Open with :meth:`open`; see ``docs/store.md`` for the schema and the durability modes."""

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
        rows, payload = self._metric_rows(samples)
        return self._insert_metrics(rows, payload)

    @staticmethod
    def _metric_rows(samples: Sequence[MetricSample]) -> tuple[list[tuple[float, str, float, str]], str]:
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
        return rows, json.dumps({"samples": wire}, allow_nan=True)

    def _insert_metrics(self, rows: list[tuple[float, str, float, str]], payload: str) -> int:
        def insert() -> int:
            with self._write("write metrics") as conn:
                conn.executemany("INSERT INTO metrics (ts, name, value, labels) VALUES (?, ?, ?, ?)", rows)
                return outbox.enqueue_in(conn, "telemetry", payload, PRIORITY_TELEMETRY)

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
                outbox.enqueue_in(conn, "events", json.dumps(payload), PRIORITY_EVENTS)
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
                return outbox.enqueue_in(conn, kind, text, priority)

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

    # -- outbox ---------------------------------------------------------------------------------

    def outbox_peek(
        self, limit: int, *, max_bytes: int | None = None, skip: Container[int] = ()
    ) -> list[OutboxItem]:
        """The next pending items, priority then id order, without removing them.

        With ``max_bytes``, stops before the item that would exceed it (but always returns at
        least one item, so one oversize item cannot block the queue). Items acknowledged but
        held for the next commit (see :meth:`hold_writes`) are not pending any more. Items whose
        id is in ``skip`` (sent, awaiting the controller's acknowledgement) count towards
        ``limit`` but are neither read nor returned.
        """
        with self._read() as conn:
            return outbox.peek(conn, limit, max_bytes=max_bytes, held=self._held.acked(), skip=skip)

    def outbox_ack(self, ids: Iterable[int]) -> int:
        """Remove delivered items; results they reference are marked synced. Returns items removed.

        While writes are held (:meth:`hold_writes`), the removal rides on the next commit
        instead of a transaction of its own; the items are gone for ``outbox_peek`` and
        ``outbox_backlog`` at once.
        """
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        if not self._held.holding:
            with self._write("acknowledge outbox items") as conn:
                return outbox.ack(conn, ids)
        new = self._held.add_acks(ids)
        with self._read() as conn:
            removed = outbox.count_present(conn, new)
        self.flush_held(only_if_due=True)
        return removed

    def outbox_backlog(self) -> dict[str, int]:
        """Pending items per kind (``results`` counted in rows); kinds with nothing pending are absent."""
        with self._read() as conn:
            return outbox.backlog(conn, skip=self._held.acked())

    # -- the commit policy ----------------------------------------------------------------------

    def hold_writes(self, interval_s: float | None) -> None:
        """Hold acknowledgements and queued metrics for the next commit, at most ``interval_s``.

        The agent's result writer turns this on with ``store.commit_interval_s`` and commits
        every interval, so they ride on its transaction; ``None`` (or 0) commits whatever is
        held and writes straight through again. ``close()`` commits what is held too.
        """
        self._held.interval_s = interval_s if interval_s else None
        if not self._held.holding:
            self.flush_held()

    def queue_metrics(self, samples: Sequence[MetricSample]) -> None:
        """Like :meth:`write_metrics`, but while writes are held the samples wait for the next
        commit instead of taking a transaction of their own. Bad samples raise at once."""
        rows, payload = self._metric_rows(samples)
        if self._held.holding:
            self._held.add_metrics(rows, payload)
            # Normally the writer's next commit takes them; should it be gone, they still go in.
            self.flush_held(only_if_due=True)
            return
        self._insert_metrics(rows, payload)

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

    def recount_rows(self) -> dict[str, tuple[int, int]]:
        """Make the kept row counts right again after rows were deleted behind edgefleet's back
        (scans each history table); returns what was wrong, ``{table: (kept, actual)}``."""
        with self._write("recount rows") as conn:
            return recount(conn)

    def stats(self) -> StoreStats:
        with self._read() as conn:
            # Kept, not counted (rowcounts.py): the health thread asks every few seconds, and
            # count(*) reads a whole table (66-83 ms for results at the default soft cap).
            rows = table_rows(conn)
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
