"""The SQL both databases share. Subclasses supply connections, transactions and dialect words.

Statements are written with ``?`` placeholders; the PostgreSQL connection adapter rewrites them.
"""

from __future__ import annotations

import abc
import json
import math
import queue
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, Protocol, cast

from edgefleet.controller.dal.base import (
    Database,
    IngestOutcome,
    PurgeReport,
    Resolution,
    RetentionCutoffs,
)
from edgefleet.controller.dal.migrations import MIGRATIONS
from edgefleet.controller.records import IngestMessage, aggregate_results, percentile_from_bins
from edgefleet.controller.schemas import (
    CommandRecord,
    CommandStatus,
    DeviceDetail,
    DeviceInfo,
    DeviceList,
    DeviceSort,
    DriftReport,
    EventRecord,
    FleetSummary,
    LabelSummary,
    ResultsSummary,
    Role,
    TelemetryPoint,
    TelemetrySeries,
    TokenInfo,
)
from edgefleet.types import JSONValue

__all__ = ["SqlConnection", "SqlDatabase"]

_CHUNK = 500
_DELETE_SLICE_S = 10.0  # seconds of raw telemetry deleted per write transaction
_AGGREGATE_CHUNK = 20_000  # rows per write transaction when storing aggregates
_DEVICE_COLUMNS = (
    "device_id, online, first_seen, last_seen, status_changed_at, agent_version, model_name, "
    "model_version, hardware, drifted"
)
_COMMAND_COLUMNS = "command_id, device_id, name, args, status, created_at, updated_at, created_by, detail"
_SORT_COLUMNS: dict[str, str] = {
    "device_id": "device_id",
    "last_seen": "last_seen",
    "first_seen": "first_seen",
    "online": "online",
    "model_version": "COALESCE(model_version, '')",
    "agent_version": "COALESCE(agent_version, '')",
}


class SqlConnection(Protocol):
    """The three calls the shared SQL needs; both drivers are adapted to it."""

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[object] = ()) -> int: ...

    def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...

    def run_many_returning(self, sql: str, rows: Sequence[Sequence[object]]) -> list[tuple[Any, ...]]:
        """A single-row ``INSERT ... VALUES (?, ...) ... RETURNING`` applied to every row."""
        ...


def _json_dict(text: str | None) -> dict[str, JSONValue]:
    if not text:
        return {}
    value = json.loads(text)
    return cast(dict[str, JSONValue], value) if isinstance(value, dict) else {"value": value}


def _device(row: tuple[Any, ...]) -> DeviceInfo:
    return DeviceInfo(
        device_id=row[0],
        online=bool(row[1]),
        first_seen=float(row[2]),
        last_seen=float(row[3]),
        status_changed_at=None if row[4] is None else float(row[4]),
        agent_version=row[5],
        model_name=row[6],
        model_version=row[7],
        hardware=_json_dict(row[8]),
        drifted=bool(row[9]),
    )


def _command(row: tuple[Any, ...]) -> CommandRecord:
    return CommandRecord(
        command_id=row[0],
        device_id=row[1],
        name=row[2],
        args=_json_dict(row[3]),
        status=row[4],
        created_at=float(row[5]),
        updated_at=float(row[6]),
        created_by=row[7],
        detail=row[8],
    )


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlDatabase(Database):
    """Everything but connecting. ``greatest`` is the two-argument max; ``templates`` fill migrations."""

    greatest: str = "max"
    templates: ClassVar[dict[str, str]] = {}

    def __init__(self, *, pool_size: int = 4) -> None:
        self._pool: queue.LifoQueue[SqlConnection] = queue.LifoQueue()
        self._pool_size = pool_size
        self._closed = False

    # --- what a dialect provides ------------------------------------------------------------------
    @abc.abstractmethod
    def _open_connection(self) -> SqlConnection: ...

    @abc.abstractmethod
    def _close_connection(self, conn: SqlConnection) -> None: ...

    @abc.abstractmethod
    def _transaction(self, conn: SqlConnection) -> AbstractContextManager[None]: ...

    @abc.abstractmethod
    def _lock_migrations(self, conn: SqlConnection) -> None:
        """Inside the migration transaction: keep other controllers from migrating at the same time."""

    @abc.abstractmethod
    def _bucket(self, column: str, seconds: int) -> str:
        """SQL for ``floor(column / seconds) * seconds`` (columns hold non-negative epoch seconds)."""

    # --- connections ------------------------------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[SqlConnection]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._open_connection()
        try:
            yield conn
        except BaseException:
            # A failed statement may leave a driver-level transaction open; never pool such a connection.
            self._close_connection(conn)
            raise
        if self._closed or self._pool.qsize() >= self._pool_size:
            self._close_connection(conn)
        else:
            self._pool.put(conn)

    @contextmanager
    def _tx(self) -> Iterator[SqlConnection]:
        with self._conn() as conn, self._transaction(conn):
            yield conn

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                return
            self._close_connection(conn)

    # --- migrations -------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        applied: list[int] = []
        with self._tx() as conn:
            conn.run(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at"
                f" {self.templates['real']})"
            )
            self._lock_migrations(conn)
            done = {int(row[0]) for row in conn.rows("SELECT version FROM schema_migrations")}
            for version, description, template in MIGRATIONS:
                if version in done:
                    continue
                for statement in template.format(**self.templates).split(";\n"):
                    if statement.strip():
                        conn.run(statement)
                conn.run(
                    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                    (version, description, _now()),
                )
                applied.append(version)
        return applied

    def schema_version(self) -> int:
        with self._conn() as conn:
            rows = conn.rows("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

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
                conn.run(
                    "UPDATE devices SET online = ?, status_changed_at = ?, agent_version = COALESCE(?,"
                    " agent_version),"
                    " model_name = COALESCE(?, model_name), model_version = COALESCE(?, model_version),"
                    " hardware = COALESCE(?, hardware) WHERE device_id = ?",
                    (
                        int(s.online),
                        s.ts,
                        s.agent_version,
                        s.model_name,
                        s.model_version,
                        None if s.hardware is None else json.dumps(s.hardware, sort_keys=True),
                        m.device_id,
                    ),
                )
                if not before or bool(before[0][0]) != s.online:
                    outcome.status_changes[m.device_id] = s.online
        telemetry = [(m.device_id, t.metric, t.ts, t.value) for m in accepted for t in m.telemetry]
        if telemetry:
            conn.run_many(
                "INSERT INTO telemetry_raw (device_id, metric, ts, value) VALUES (?, ?, ?, ?)", telemetry
            )
        self._store_results(conn, accepted, bucket_s)
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
                    "INSERT INTO drift_reports (device_id, ts, received_at, drifted, score, details)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        m.device_id,
                        d.ts,
                        m.received_at,
                        int(d.drifted),
                        d.score,
                        json.dumps(d.details, sort_keys=True),
                    ),
                )
                conn.run(
                    "UPDATE devices SET drifted = ?, drift_at = ? WHERE device_id = ? AND"
                    " (drift_at IS NULL OR drift_at <= ?)",
                    (int(d.drifted), d.ts, m.device_id, d.ts),
                )
            for ack in m.acks:
                changed = conn.run(
                    "UPDATE commands SET status = ?, updated_at = ?, detail = COALESCE(?, detail)"
                    " WHERE command_id = ? AND device_id = ?",
                    ("acked" if ack.ok else "failed", ack.ts, ack.detail, ack.command_id, m.device_id),
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
            fields = ("device_id", "COALESCE(model_version, '')", "COALESCE(agent_version, '')", "hardware")
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

    # --- commands ---------------------------------------------------------------------------------
    def insert_command(self, record: CommandRecord) -> None:
        with self._tx() as conn:
            conn.run(
                f"INSERT INTO commands ({_COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.command_id,
                    record.device_id,
                    record.name,
                    json.dumps(record.args, sort_keys=True),
                    record.status,
                    record.created_at,
                    record.updated_at,
                    record.created_by,
                    record.detail,
                ),
            )

    def set_command_status(
        self, command_id: str, status: CommandStatus, *, at: float, detail: str | None = None
    ) -> bool:
        # An ack that raced ahead of the publish confirmation must not be overwritten by "sent".
        guard = " AND status NOT IN ('acked', 'failed')" if status in ("sent", "pending") else ""
        with self._tx() as conn:
            changed = conn.run(
                "UPDATE commands SET status = ?, updated_at = ?, detail = COALESCE(?, detail) WHERE"
                f" command_id = ?{guard}",
                (status, at, detail, command_id),
            )
        return changed > 0

    def get_command(self, command_id: str) -> CommandRecord | None:
        with self._conn() as conn:
            rows = conn.rows(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE command_id = ?", (command_id,))
        return _command(rows[0]) if rows else None

    def list_commands(self, device_id: str, *, limit: int = 50) -> list[CommandRecord]:
        with self._conn() as conn:
            rows = conn.rows(
                f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE device_id = ? ORDER BY created_at DESC"
                " LIMIT ?",
                (device_id, limit),
            )
        return [_command(r) for r in rows]

    # --- auth -------------------------------------------------------------------------------------
    def add_token(self, token_id: str, name: str, role: Role, token_hash: str, *, at: float) -> None:
        with self._tx() as conn:
            conn.run(
                "INSERT INTO api_tokens (token_id, name, role, token_hash, created_at) VALUES (?, ?, ?, ?,"
                " ?)",
                (token_id, name, role, token_hash, at),
            )

    def find_token(self, token_hash: str, *, at: float) -> TokenInfo | None:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT token_id, name, role, created_at, last_used_at FROM api_tokens"
                " WHERE token_hash = ? AND revoked_at IS NULL",
                (token_hash,),
            )
            if not rows:
                return None
            token_id, name, role, created_at, last_used = rows[0]
            # Writing on every request would serialize readers on SQLite; a minute's precision is enough.
            if last_used is None or at - float(last_used) > 60:
                with self._transaction(conn):
                    conn.run("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?", (at, token_id))
        return TokenInfo(
            token_id=token_id, name=name, role=role, created_at=float(created_at), last_used_at=at
        )

    def list_tokens(self) -> list[TokenInfo]:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT token_id, name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER"
                " BY created_at"
            )
        return [
            TokenInfo(
                token_id=r[0],
                name=r[1],
                role=r[2],
                created_at=float(r[3]),
                last_used_at=None if r[4] is None else float(r[4]),
                revoked_at=None if r[5] is None else float(r[5]),
            )
            for r in rows
        ]

    def revoke_token(self, token_id: str, *, at: float) -> bool:
        with self._tx() as conn:
            changed = conn.run(
                "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (at, token_id),
            )
        return changed > 0

    def upsert_user(self, username: str, password_hash: str, role: Role, *, at: float) -> None:
        with self._tx() as conn:
            conn.run(
                "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role ="
                " excluded.role",
                (username, password_hash, role, at),
            )

    def get_user(self, username: str) -> tuple[str, Role] | None:
        with self._conn() as conn:
            rows = conn.rows("SELECT password_hash, role FROM users WHERE username = ?", (username,))
        return (str(rows[0][0]), cast(Role, rows[0][1])) if rows else None

    def add_session(
        self, session_hash: str, username: str, role: Role, *, at: float, expires_at: float
    ) -> None:
        with self._tx() as conn:
            conn.run(
                "INSERT INTO sessions (session_hash, username, role, created_at, expires_at) VALUES (?, ?,"
                " ?, ?, ?)",
                (session_hash, username, role, at, expires_at),
            )

    def get_session(self, session_hash: str, *, at: float) -> tuple[str, Role] | None:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT username, role FROM sessions WHERE session_hash = ? AND expires_at > ?",
                (session_hash, at),
            )
        return (str(rows[0][0]), cast(Role, rows[0][1])) if rows else None

    def delete_session(self, session_hash: str) -> None:
        with self._tx() as conn:
            conn.run("DELETE FROM sessions WHERE session_hash = ?", (session_hash,))

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
            ("events", "DELETE FROM events WHERE ts < ?", cutoffs.events),
            ("drift_reports", "DELETE FROM drift_reports WHERE ts < ?", cutoffs.drift),
            ("commands", "DELETE FROM commands WHERE updated_at < ?", cutoffs.commands),
            ("sessions", "DELETE FROM sessions WHERE expires_at < ?", cutoffs.sessions),
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

    def get_state(self, key: str) -> str | None:
        with self._conn() as conn:
            rows = conn.rows("SELECT value FROM controller_state WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_state(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.run(
                "INSERT INTO controller_state (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _now() -> float:
    return time.time()
