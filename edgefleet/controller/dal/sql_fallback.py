"""Cloud fallback counts (migration 6): results per reason and bucket, and each device's last
``status.fallback``. The share itself comes from ``result_buckets.cloud_count``."""

from __future__ import annotations

import json
import math
from typing import Any

from edgefleet.controller.dal.sql_base import SqlBase, SqlConnection, _json_dict
from edgefleet.controller.fallback_stats import DeviceFallback, device_fallback
from edgefleet.controller.records import IngestMessage

__all__ = ["SqlFallback"]


class SqlFallback(SqlBase):
    """The cloud-fallback part of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    def _store_fallback(self, conn: SqlConnection, accepted: list[IngestMessage], bucket_s: int) -> None:
        counts: dict[tuple[str, float, str, str], int] = {}
        for m in accepted:
            for item in m.results:
                if item.fallback_reason:
                    start = float(math.floor(item.ts / bucket_s) * bucket_s)
                    key = (m.device_id, start, item.fallback_reason[:200], item.answered_by)
                    counts[key] = counts.get(key, 0) + 1
        if counts:
            conn.run_many(
                "INSERT INTO result_fallback_reasons (device_id, bucket_start, reason, answered_by, count)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, bucket_start, reason, answered_by)"
                " DO UPDATE SET count = result_fallback_reasons.count + excluded.count",
                [(*key, n) for key, n in counts.items()],
            )
        statuses = [
            (json.dumps(m.status.fallback, sort_keys=True), m.status.ts, m.device_id, m.status.ts)
            for m in accepted
            if m.status is not None and m.status.fallback is not None
        ]
        for row in statuses:  # a status per device now and then: one statement each is fine
            # A status that arrives late (an older one resent) never replaces a newer one.
            conn.run(
                "UPDATE devices SET fallback = ?, fallback_at = ? WHERE device_id = ?"
                " AND (fallback_at IS NULL OR fallback_at <= ?)",
                row,
            )

    def fallback_stats(
        self, device_id: str | None, *, since: float, until: float, limit: int = 5000
    ) -> list[DeviceFallback]:
        where = "bucket_start >= ? AND bucket_start < ?"
        params: list[object] = [since, until]
        device_clause = ""
        if device_id is not None:
            where += " AND device_id = ?"
            params.append(device_id)
            device_clause = " AND device_id = ?"
        with self._conn() as conn:
            totals = conn.rows(
                f"SELECT device_id, SUM(count), SUM(cloud_count) FROM result_buckets WHERE {where}"
                " GROUP BY device_id",
                params,
            )
            reasons = conn.rows(
                "SELECT device_id, reason, answered_by, SUM(count) FROM result_fallback_reasons"
                f" WHERE {where} GROUP BY device_id, reason, answered_by",
                params,
            )
            statuses = conn.rows(
                "SELECT device_id, fallback, fallback_at FROM devices"
                f" WHERE fallback IS NOT NULL{device_clause}",
                [device_id] if device_id is not None else [],
            )
        per_device: dict[str, dict[str, Any]] = {}

        def entry(dev: str) -> dict[str, Any]:
            return per_device.setdefault(
                dev, {"results": 0, "cloud": 0, "reasons": [], "status": None, "at": None}
            )

        for dev, count, cloud in totals:
            e = entry(str(dev))
            e["results"], e["cloud"] = int(count), int(cloud)
        for dev, reason, answered_by, count in reasons:
            entry(str(dev))["reasons"].append((str(reason), str(answered_by), int(count)))
        for dev, text, at in statuses:
            e = entry(str(dev))
            e["status"], e["at"] = _json_dict(text), float(at) if at is not None else None
        return [
            device_fallback(
                dev,
                results=e["results"],
                cloud_answers=e["cloud"],
                reasons=e["reasons"],
                status=e["status"],
                status_at=e["at"],
            )
            for dev, e in sorted(per_device.items())[:limit]
        ]
