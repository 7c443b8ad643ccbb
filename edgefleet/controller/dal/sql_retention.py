"""Retention: telemetry downsampling into minute/hour aggregates and purging expired rows."""

from __future__ import annotations

import math
from typing import Any

from edgefleet.controller.dal.base import (
    PurgeReport,
    RetentionCutoffs,
)
from edgefleet.controller.dal.sql_base import SqlBase

__all__ = ["SqlRetention"]

_DELETE_SLICE_S = 10.0  # seconds of raw telemetry deleted per write transaction
_AGGREGATE_CHUNK = 20_000  # rows per write transaction when storing aggregates


class SqlRetention(SqlBase):
    """The retention half of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    # --- retention --------------------------------------------------------------------------------
    def downsample_telemetry(self, *, since: float, until: float) -> int:
        # Aggregate with plain reads (which never block the ingest writer, WAL or MVCC), then
        # write the results in short transactions: an INSERT ... SELECT over minutes of raw
        # telemetry would hold SQLite's write lock for seconds and stall the ingest meanwhile.
        minute_start = float(math.floor(since / 60) * 60)
        hour_start = float(math.floor(since / 3600) * 3600)
        with self._conn() as conn:
            minutes = conn.rows(
                f"SELECT device_id, metric, 60, {self._bucket('ts', 60)}, COUNT(*), SUM(value), MIN(value),"
                " MAX(value) FROM telemetry_raw WHERE ts >= ? AND ts < ? GROUP BY 1, 2, 4",
                (minute_start, until),
            )
        self._upsert_aggregates(minutes)
        with self._conn() as conn:
            hours = conn.rows(
                f"SELECT device_id, metric, 3600, {self._bucket('bucket_start', 3600)}, SUM(count), SUM(sum),"
                " MIN(min), MAX(max) FROM telemetry_agg WHERE resolution_s = 60 AND bucket_start >= ?"
                " AND bucket_start < ? GROUP BY 1, 2, 4",
                (hour_start, until),
            )
        self._upsert_aggregates(hours)
        return len(minutes) + len(hours)

    def _upsert_aggregates(self, rows: list[tuple[Any, ...]]) -> None:
        statement = (
            "INSERT INTO telemetry_agg (device_id, metric, resolution_s, bucket_start, count, sum, min, max)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, metric, resolution_s, bucket_start)"
            " DO UPDATE SET count = excluded.count, sum = excluded.sum, min = excluded.min,"
            " max = excluded.max"
        )
        for start in range(0, len(rows), _AGGREGATE_CHUNK):
            chunk = [
                (r[0], r[1], int(r[2]), float(r[3]), int(r[4]), float(r[5]), float(r[6]), float(r[7]))
                for r in rows[start : start + _AGGREGATE_CHUNK]
            ]
            with self._tx() as conn:
                conn.run_many(statement, chunk)

    def purge(self, cutoffs: RetentionCutoffs) -> PurgeReport:
        report = PurgeReport()
        # The two big tables (a row per metric sample, a row per message) go in time slices.
        report.deleted["telemetry_raw"] = self._delete_in_slices("telemetry_raw", "ts", cutoffs.raw_telemetry)
        report.deleted["seen_messages"] = self._delete_in_slices(
            "seen_messages", "received_at", cutoffs.dedup
        )
        deletes = (
            (
                "telemetry_minute",
                "DELETE FROM telemetry_agg WHERE resolution_s = 60 AND bucket_start < ?",
                cutoffs.minute_aggregates,
            ),
            (
                "telemetry_hour",
                "DELETE FROM telemetry_agg WHERE resolution_s = 3600 AND bucket_start < ?",
                cutoffs.hour_aggregates,
            ),
            ("result_buckets", "DELETE FROM result_buckets WHERE bucket_start < ?", cutoffs.results),
            (
                "result_latency_bins",
                "DELETE FROM result_latency_bins WHERE bucket_start < ?",
                cutoffs.results,
            ),
            (
                "result_fallback_reasons",
                "DELETE FROM result_fallback_reasons WHERE bucket_start < ?",
                cutoffs.results,
            ),
            # Late cloud answers (migration 8) live as long as the results they improve.
            ("late_answers", "DELETE FROM late_answers WHERE ts < ?", cutoffs.results),
            ("events", "DELETE FROM events WHERE ts < ?", cutoffs.events),
            ("drift_reports", "DELETE FROM drift_reports WHERE ts < ?", cutoffs.drift),
            ("commands", "DELETE FROM commands WHERE updated_at < ?", cutoffs.commands),
            ("sessions", "DELETE FROM sessions WHERE expires_at < ?", cutoffs.sessions),
            ("hard_examples", "DELETE FROM hard_examples WHERE answered_at < ?", cutoffs.hard_examples),
        )
        for name, sql, cutoff in deletes:
            # One short transaction per table keeps the ingest writer from waiting long on SQLite's lock.
            with self._tx() as conn:
                report.deleted[name] = conn.run(sql, (cutoff,))
        return report

    def _delete_in_slices(self, table: str, column: str, cutoff: float) -> int:
        """Delete rows with ``column < cutoff``, oldest first, ``_DELETE_SLICE_S`` of data per transaction."""
        deleted = 0
        while True:
            with self._conn() as conn:
                oldest = conn.rows(f"SELECT MIN({column}) FROM {table}")[0][0]
            if oldest is None or float(oldest) >= cutoff:
                return deleted
            edge = min(cutoff, float(oldest) + _DELETE_SLICE_S)
            with self._tx() as conn:
                deleted += conn.run(f"DELETE FROM {table} WHERE {column} < ?", (edge,))
