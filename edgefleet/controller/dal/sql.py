"""The SQL both databases share: ingest and the read queries behind the API. Subclasses supply
connections, transactions and dialect words; the admin and retention parts live in
``sql_admin`` and ``sql_retention``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from edgefleet.controller.dal.base import (
    IngestOutcome,
    Resolution,
)
from edgefleet.controller.dal.sql_admin import SqlAdmin
from edgefleet.controller.dal.sql_base import SqlBase, SqlConnection, _device, _json_dict
from edgefleet.controller.dal.sql_campaigns import SqlCampaigns
from edgefleet.controller.dal.sql_delivery import SqlDelivery
from edgefleet.controller.dal.sql_drift import SqlDrift
from edgefleet.controller.dal.sql_fallback import SqlFallback
from edgefleet.controller.dal.sql_hard_examples import SqlHardExamples
from edgefleet.controller.dal.sql_late import SqlLateAnswers
from edgefleet.controller.dal.sql_ota import SqlOta
from edgefleet.controller.dal.sql_overview import SqlOverview
from edgefleet.controller.dal.sql_retention import SqlRetention
from edgefleet.controller.records import IngestMessage, aggregate_results, percentile_from_bins
from edgefleet.controller.schemas import (
    DeviceDetail,
    DeviceInfo,
    DeviceList,
    DeviceSort,
    DriftReport,
    EventRecord,
    FleetSummary,
    LabelSummary,
    ResultsSummary,
    TelemetryPoint,
    TelemetrySeries,
)

__all__ = ["SqlBase", "SqlConnection", "SqlDatabase"]

_CHUNK = 500
_DEVICE_COLUMNS = (
    "device_id, online, first_seen, last_seen, status_changed_at, agent_version, model_name, "
    "model_version, hardware, drifted, name, tags"
)
_SORT_COLUMNS: dict[str, str] = {
    "device_id": "device_id",
    "last_seen": "last_seen",
    "first_seen": "first_seen",
    "online": "online",
    "model_version": "COALESCE(model_version, '')",
    "agent_version": "COALESCE(agent_version, '')",
}


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlDatabase(
    SqlAdmin,
    SqlRetention,
    SqlOverview,
    SqlDelivery,
    SqlDrift,
    SqlHardExamples,
    SqlFallback,
    SqlOta,
    SqlLateAnswers,
    SqlCampaigns,
):
    """Everything but connecting."""

    # --- ingest -----------------------------------------------------------------------------------
    def ingest(self, messages: Sequence[IngestMessage], *, result_bucket_s: int) -> IngestOutcome:
        outcome = IngestOutcome()
        unique: dict[tuple[str, str], IngestMessage] = {}
        for message in messages:
            if message.message_id is None:
                continue
            if message.key in unique:
                outcome.duplicates += 1
            else:
                unique[message.key] = message
        if not messages:
            return outcome
        with self._tx() as conn:
            claimed = self._claim(conn, list(unique.values())) if unique else set()
            accepted = [
                m for m in messages if m.message_id is None or (m.key in claimed and unique.get(m.key) is m)
            ]
            outcome.duplicates += len(unique) - len(claimed)
            outcome.stored = len(accepted)
            if accepted:
                self._store_accepted(conn, accepted, result_bucket_s, outcome)
        return outcome

    def _claim(self, conn: SqlConnection, messages: list[IngestMessage]) -> set[tuple[str, str]]:
        rows = conn.run_many_returning(
            "INSERT INTO seen_messages (device_id, message_id, kind, received_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (device_id, message_id) DO NOTHING RETURNING device_id, message_id",
            [(m.device_id, m.message_id or "", m.kind, m.received_at) for m in messages],
        )
        return {(str(r[0]), str(r[1])) for r in rows}

    def _store_accepted(
        self, conn: SqlConnection, accepted: list[IngestMessage], bucket_s: int, outcome: IngestOutcome
    ) -> None:
        seen: dict[str, tuple[float, float]] = {}
        for m in accepted:
            low, high = seen.get(m.device_id, (m.received_at, m.received_at))
            seen[m.device_id] = (min(low, m.received_at), max(high, m.received_at))
        ids = sorted(seen)
        existing: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join(["?"] * len(chunk))
            existing.update(
                str(r[0])
                for r in conn.rows(f"SELECT device_id FROM devices WHERE device_id IN ({marks})", chunk)
            )
        outcome.new_devices = [d for d in ids if d not in existing]
        outcome.changed_devices.update(ids)
        conn.run_many(
            "INSERT INTO devices (device_id, first_seen, last_seen) VALUES (?, ?, ?) "
            f"ON CONFLICT (device_id) DO UPDATE SET last_seen = {self.greatest}(devices.last_seen,"
            " excluded.last_seen)",
            [(d, seen[d][0], seen[d][1]) for d in ids],
        )
        for m in accepted:
            if m.status is not None:
                s = m.status
                before = conn.rows("SELECT online FROM devices WHERE device_id = ?", (m.device_id,))
                # status_changed_at moves only when online flips: it is what "online since" shows.
                conn.run(
                    "UPDATE devices SET online = ?, status_changed_at = CASE WHEN status_changed_at IS NULL"
                    " OR online IS NULL OR online <> ? THEN ? ELSE status_changed_at END,"
                    " agent_version = COALESCE(?, agent_version),"
                    " model_name = COALESCE(?, model_name), model_version = COALESCE(?, model_version),"
                    " hardware = COALESCE(?, hardware) WHERE device_id = ?",
                    (
                        int(s.online),
                        int(s.online),
                        s.ts,
                        s.agent_version,
                        s.model_name,
                        s.model_version,
                        None if s.hardware is None else json.dumps(s.hardware, sort_keys=True),
                        m.device_id,
                    ),
                )
                if s.name is not None or s.tags is not None:  # [device] name/tags (migration 7)
                    conn.run(
                        "UPDATE devices SET name = COALESCE(?, name), tags = COALESCE(?, tags)"
                        " WHERE device_id = ?",
                        (s.name, None if s.tags is None else json.dumps(s.tags), m.device_id),
                    )
                if not before or bool(before[0][0]) != s.online:
                    outcome.status_changes[m.device_id] = s.online
        telemetry = [(m.device_id, t.metric, t.ts, t.value) for m in accepted for t in m.telemetry]
        if telemetry:
            conn.run_many(
                "INSERT INTO telemetry_raw (device_id, metric, ts, value) VALUES (?, ?, ?, ?)", telemetry
            )
        self._store_results(conn, accepted, bucket_s)
        self._store_fallback(conn, accepted, bucket_s)
        self._store_late_answers(conn, accepted)
        self._record_delivery(conn, accepted)
        events = [
            (m.device_id, e.ts, m.received_at, e.kind, e.level, e.message, json.dumps(e.data, sort_keys=True))
            for m in accepted
            for e in m.events
        ]
        if events:
            conn.run_many(
                "INSERT INTO events (device_id, ts, received_at, kind, level, message, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                events,
            )
        for m in accepted:
            for d in m.drift:
                conn.run(
                    "INSERT INTO drift_reports (device_id, ts, received_at, drifted, score, details,"
                    " model_name, model_version, counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        m.device_id,
                        d.ts,
                        m.received_at,
                        int(d.drifted),
                        d.score,
                        json.dumps(d.details, sort_keys=True),
                        d.model_name,
                        d.model_version,
                        None if d.counts is None else json.dumps(d.counts),
                    ),
                )
                conn.run(
                    "UPDATE devices SET drifted = ?, drift_at = ? WHERE device_id = ? AND"
                    " (drift_at IS NULL OR drift_at <= ?)",
                    (int(d.drifted), d.ts, m.device_id, d.ts),
                )
            for ack in m.acks:
                # A final outcome (done, failed, expired, unknown) is never taken back by a late "acked".
                changed = conn.run(
                    "UPDATE commands SET status = ?, updated_at = ?, detail = COALESCE(?, detail)"
                    " WHERE command_id = ? AND device_id = ?"
                    " AND NOT (? = 'acked' AND status IN ('done', 'failed', 'expired', 'unknown'))",
                    (ack.status, ack.ts, ack.detail, ack.command_id, m.device_id, ack.status),
                )
                if changed:
                    outcome.acked_commands.append(ack.command_id)

    def _store_results(self, conn: SqlConnection, accepted: list[IngestMessage], bucket_s: int) -> None:
        buckets, bins = aggregate_results(accepted, bucket_s)
        if buckets:
            conn.run_many(
                "INSERT INTO result_buckets (device_id, bucket_start, label, model_version, count,"
                " cloud_count,"
                " latency_sum_ms, latency_count, latency_max_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (device_id, bucket_start, label, model_version) DO UPDATE SET"
                " count = result_buckets.count + excluded.count,"
                " cloud_count = result_buckets.cloud_count + excluded.cloud_count,"
                " latency_sum_ms = result_buckets.latency_sum_ms + excluded.latency_sum_ms,"
                " latency_count = result_buckets.latency_count + excluded.latency_count,"
                f" latency_max_ms = {self.greatest}(result_buckets.latency_max_ms, excluded.latency_max_ms)",
                [
                    (
                        b.device_id,
                        b.bucket_start,
                        b.label,
                        b.model_version,
                        b.count,
                        b.cloud_count,
                        b.latency_sum_ms,
                        b.latency_count,
                        b.latency_max_ms,
                    )
                    for b in buckets
                ],
            )
        if bins:
            conn.run_many(
                "INSERT INTO result_latency_bins (device_id, bucket_start, bin, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (device_id, bucket_start, bin) DO UPDATE SET"
                " count = result_latency_bins.count + excluded.count",
                [(b.device_id, b.bucket_start, b.bin, b.count) for b in bins],
            )

    # --- devices ----------------------------------------------------------------------------------
    def list_devices(
        self,
        *,
        online: bool | None = None,
        model_version: str | None = None,
        search: str | None = None,
        sort: DeviceSort = "device_id",
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> DeviceList:
        where: list[str] = []
        params: list[object] = []
        if online is not None:
            where.append("online = ?")
            params.append(int(online))
        if model_version is not None:
            where.append("model_version = ?")
            params.append(model_version)
        if search:
            pattern = _like(search)
            fields = (
                "device_id",
                "COALESCE(model_version, '')",
                "COALESCE(agent_version, '')",
                "hardware",
                "COALESCE(name, '')",
                "COALESCE(tags, '')",
            )
            where.append("(" + " OR ".join(f"LOWER({f}) LIKE ? ESCAPE '\\'" for f in fields) + ")")
            params.extend([pattern] * len(fields))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        order = f"{_SORT_COLUMNS[sort]} {'DESC' if descending else 'ASC'}, device_id ASC"
        with self._conn() as conn:
            total = int(conn.rows(f"SELECT COUNT(*) FROM devices{clause}", params)[0][0])
            rows = conn.rows(
                f"SELECT {_DEVICE_COLUMNS} FROM devices{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return DeviceList(devices=[_device(r) for r in rows], total=total)

    def get_device(self, device_id: str) -> DeviceInfo | None:
        with self._conn() as conn:
            rows = conn.rows(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?", (device_id,))
        return _device(rows[0]) if rows else None

    def device_detail(self, device_id: str) -> DeviceDetail | None:
        device = self.get_device(device_id)
        if device is None:
            return None
        with self._conn() as conn:
            latest = conn.rows(
                "SELECT t.metric, t.value FROM telemetry_raw t JOIN (SELECT metric, MAX(ts) AS ts FROM"
                " telemetry_raw"
                " WHERE device_id = ? GROUP BY metric) m ON t.metric = m.metric AND t.ts = m.ts"
                " WHERE t.device_id = ?",
                (device_id, device_id),
            )
        return DeviceDetail(
            device=device,
            latest_telemetry={str(r[0]): float(r[1]) for r in latest},
            recent_commands=self.list_commands(device_id, limit=20),
            delivery=self.delivery_report(device_id),
        )

    def telemetry(
        self,
        device_id: str,
        metric: str,
        *,
        since: float,
        until: float,
        resolution: Resolution = "auto",
        raw_horizon: float | None = None,
        limit: int = 10_000,
    ) -> TelemetrySeries:
        if resolution == "auto":
            if raw_horizon is None or since >= raw_horizon:
                resolution = "raw"
            else:
                resolution = "minute" if until - since <= 2 * 86_400 else "hour"
        with self._conn() as conn:
            if resolution == "raw":
                rows = conn.rows(
                    "SELECT ts, value FROM telemetry_raw WHERE device_id = ? AND metric = ? AND ts >= ?"
                    " AND ts < ?"
                    " ORDER BY ts DESC LIMIT ?",
                    (device_id, metric, since, until, limit),
                )
                points = [TelemetryPoint(ts=float(r[0]), value=float(r[1])) for r in reversed(rows)]
            else:
                rows = conn.rows(
                    "SELECT bucket_start, sum, count, min, max FROM telemetry_agg WHERE device_id = ? AND"
                    " metric = ?"
                    " AND resolution_s = ? AND bucket_start >= ? AND bucket_start < ? ORDER BY"
                    " bucket_start DESC LIMIT ?",
                    (device_id, metric, 60 if resolution == "minute" else 3600, since, until, limit),
                )
                points = [
                    TelemetryPoint(
                        ts=float(r[0]),
                        value=float(r[1]) / int(r[2]),
                        count=int(r[2]),
                        min=float(r[3]),
                        max=float(r[4]),
                    )
                    for r in reversed(rows)
                ]
        return TelemetrySeries(device_id=device_id, metric=metric, resolution=resolution, points=points)

    def telemetry_metrics(self, device_id: str) -> list[str]:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT DISTINCT metric FROM telemetry_raw WHERE device_id = ? UNION"
                " SELECT DISTINCT metric FROM telemetry_agg WHERE device_id = ?",
                (device_id, device_id),
            )
        return sorted(str(r[0]) for r in rows)

    def drift_reports(self, device_id: str, *, since: float, limit: int = 100) -> list[DriftReport]:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT id, device_id, ts, drifted, score, details FROM drift_reports WHERE device_id = ?"
                " AND ts >= ?"
                " ORDER BY ts DESC, id DESC LIMIT ?",
                (device_id, since, limit),
            )
        return [
            DriftReport(
                id=int(r[0]),
                device_id=r[1],
                ts=float(r[2]),
                drifted=bool(r[3]),
                score=None if r[4] is None else float(r[4]),
                details=_json_dict(r[5]),
            )
            for r in rows
        ]

    def events(
        self, device_id: str | None, *, since: float, kind: str | None = None, limit: int = 100
    ) -> list[EventRecord]:
        where = ["ts >= ?"]
        params: list[object] = [since]
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT id, device_id, ts, kind, level, message, data FROM events"
                f" WHERE {' AND '.join(where)}"
                " ORDER BY ts DESC, id DESC LIMIT ?",
                [*params, limit],
            )
        return [
            EventRecord(
                id=int(r[0]),
                device_id=r[1],
                ts=float(r[2]),
                kind=r[3],
                level=r[4],
                message=r[5],
                data=_json_dict(r[6]),
            )
            for r in rows
        ]

    def results_summary(
        self, device_id: str | None, *, since: float, until: float, bucket_s: int
    ) -> ResultsSummary:
        where = "bucket_start >= ? AND bucket_start < ?"
        params: list[object] = [since, until]
        if device_id is not None:
            where += " AND device_id = ?"
            params.append(device_id)
        with self._conn() as conn:
            per_label = conn.rows(
                "SELECT label, SUM(count), SUM(cloud_count), SUM(latency_sum_ms), SUM(latency_count),"
                f" MAX(latency_max_ms) FROM result_buckets WHERE {where} GROUP BY label ORDER BY label",
                params,
            )
            bins = conn.rows(
                f"SELECT bin, SUM(count) FROM result_latency_bins WHERE {where} GROUP BY bin", params
            )
            series = conn.rows(
                f"SELECT bucket_start, label, SUM(count), SUM(cloud_count) FROM result_buckets WHERE {where}"
                " GROUP BY bucket_start, label ORDER BY bucket_start",
                params,
            )
        total = sum(int(r[1]) for r in per_label)
        cloud = sum(int(r[2]) for r in per_label)
        latency_sum = sum(float(r[3]) for r in per_label)
        latency_count = sum(int(r[4]) for r in per_label)
        latency_max = max((float(r[5]) for r in per_label if int(r[4])), default=None)
        buckets: dict[float, dict[str, Any]] = {}
        for start, label, count, cloud_count in series:
            key = float(math.floor(float(start) / bucket_s) * bucket_s)
            entry = buckets.setdefault(key, {"bucket_start": key, "total": 0, "cloud_count": 0, "labels": {}})
            entry["total"] += int(count)
            entry["cloud_count"] += int(cloud_count)
            entry["labels"][str(label)] = entry["labels"].get(str(label), 0) + int(count)
        return ResultsSummary(
            device_id=device_id,
            since=since,
            until=until,
            bucket_s=bucket_s,
            total=total,
            cloud_count=cloud,
            fallback_share=(cloud / total) if total else None,
            mean_latency_ms=(latency_sum / latency_count) if latency_count else None,
            p95_latency_ms=percentile_from_bins([(int(b), int(c)) for b, c in bins], 0.95),
            max_latency_ms=latency_max,
            labels=[LabelSummary(label=str(r[0]), count=int(r[1]), cloud_count=int(r[2])) for r in per_label],
            buckets=[buckets[k] for k in sorted(buckets)],
        )

    def fleet_summary(self, *, now: float, window_s: int) -> FleetSummary:
        with self._conn() as conn:
            total, online = conn.rows("SELECT COUNT(*), COALESCE(SUM(online), 0) FROM devices")[0]
            versions = conn.rows(
                "SELECT COALESCE(model_version, ''), COUNT(*) FROM devices GROUP BY 1 ORDER BY 1"
            )
            drifted = conn.rows(
                "SELECT device_id FROM devices WHERE drifted = 1 ORDER BY device_id LIMIT 1000"
            )
        results = self.results_summary(None, since=now - window_s, until=now + 1, bucket_s=window_s)
        return FleetSummary(
            ts=now,
            window_s=window_s,
            devices_total=int(total),
            online=int(online),
            offline=int(total) - int(online),
            results_total=results.total,
            throughput_per_s=results.total / window_s,
            p95_latency_ms=results.p95_latency_ms,
            fallback_share=results.fallback_share,
            drifted_devices=[str(r[0]) for r in drifted],
            model_versions={str(r[0]): int(r[1]) for r in versions},
        )
