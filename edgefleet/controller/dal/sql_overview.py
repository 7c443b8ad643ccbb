"""The dashboard's fleet table in SQL: one page of devices with their latest figures, and totals.

Fetching each device's figures one by one would be thousands of requests for a large fleet, so
one statement answers a filtered, sorted page with correlated subqueries over the
``(device_id, metric, ts)`` index, and one more the fleet totals.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from edgefleet.controller.dal.sql_base import SqlBase, SqlConnection
from edgefleet.controller.overview import (
    OVERVIEW_METRICS,
    OverviewCounts,
    OverviewDevice,
    OverviewPage,
    OverviewSort,
)

__all__ = ["TOTALS_TTL_S", "SqlOverview"]

_LATEST = (
    "(SELECT t.value FROM telemetry_raw t WHERE t.device_id = d.device_id AND t.metric = ?"
    " ORDER BY t.ts DESC LIMIT 1)"
)
_LATEST_TS = (
    "(SELECT t.ts FROM telemetry_raw t WHERE t.device_id = d.device_id AND t.metric = ?"
    " ORDER BY t.ts DESC LIMIT 1)"
)
_DRIFT_SCORE = (
    "(SELECT r.score FROM drift_reports r WHERE r.device_id = d.device_id ORDER BY r.ts DESC, r.id DESC"
    " LIMIT 1)"
)
_DRIFT_AT = "(SELECT MAX(r.ts) FROM drift_reports r WHERE r.device_id = d.device_id)"
_RESULTS = (
    "(SELECT SUM(b.count) FROM result_buckets b WHERE b.device_id = d.device_id AND b.bucket_start >= ?)"
)
_TOP_LABEL = (
    "(SELECT b.label FROM result_buckets b WHERE b.device_id = d.device_id AND b.bucket_start >= ?"
    " GROUP BY b.label ORDER BY SUM(b.count) DESC, b.label LIMIT 1)"
)
_METRIC_PARAMS: tuple[str, ...] = (
    OVERVIEW_METRICS["throughput"],
    OVERVIEW_METRICS["p95_latency_ms"],
    OVERVIEW_METRICS["fallback_share"],
    OVERVIEW_METRICS["throughput"],
)
_COLUMNS = (
    "d.device_id, d.online, d.last_seen, d.status_changed_at, d.agent_version, d.model_name,"
    f" d.model_version, d.drifted, {_DRIFT_SCORE} AS drift_score, {_LATEST} AS throughput,"
    f" {_LATEST} AS p95_latency_ms, {_LATEST} AS fallback_share, {_LATEST_TS} AS metrics_at,"
    f" {_RESULTS} AS results_recent, {_TOP_LABEL} AS top_label, {_DRIFT_AT} AS drift_at"
)
# Sort keys: (SQL over `devices d`, its parameter: a metric name, "since" or nothing, nullable).
_SORT_KEYS: dict[str, tuple[str, str | None, bool]] = {
    "device_id": ("d.device_id", None, False),
    "online": ("d.online", None, False),
    "model_version": ("COALESCE(d.model_version, '')", None, False),
    "last_seen": ("d.last_seen", None, False),
    "drifted": ("d.drifted", None, False),
    "throughput": (_LATEST, OVERVIEW_METRICS["throughput"], True),
    "p95_latency_ms": (_LATEST, OVERVIEW_METRICS["p95_latency_ms"], True),
    "fallback_share": (_LATEST, OVERVIEW_METRICS["fallback_share"], True),
    "results_recent": (_RESULTS, "since", True),
}

# Fleet totals need only two figures per device: skip the page's other subqueries.
_TOTALS = (
    "SELECT COUNT(*), COALESCE(SUM(online), 0), COALESCE(SUM(drifted), 0),"
    " SUM(CASE WHEN online = 1 THEN throughput END),"
    " SUM(CASE WHEN online = 1 AND fallback_share IS NOT NULL THEN throughput * fallback_share END),"
    " SUM(CASE WHEN online = 1 AND fallback_share IS NOT NULL THEN throughput END)"
    f" FROM (SELECT d.online, d.drifted, {_LATEST} AS throughput, {_LATEST} AS fallback_share"
    " FROM devices d) o"
)
_TOTALS_PARAMS = (OVERVIEW_METRICS["throughput"], OVERVIEW_METRICS["fallback_share"])
_VERSIONS = "SELECT COALESCE(model_version, ''), COUNT(*) FROM devices GROUP BY 1 ORDER BY 1"

# The totals cost two index lookups per device in the fleet; pages refresh on every live event
# from every open browser, so they share one computation for this long.
TOTALS_TTL_S = 2.0


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(
    online: bool | None, model_version: str | None, search: str | None, drifted: bool | None
) -> tuple[str, list[object]]:
    where: list[str] = []
    params: list[object] = []
    if online is not None:
        where.append("online = ?")
        params.append(int(online))
    if drifted is not None:
        where.append("drifted = ?")
        params.append(int(drifted))
    if model_version is not None:
        where.append("COALESCE(model_version, '') = ?")
        params.append(model_version)
    if search:
        fields = (
            "device_id",
            "COALESCE(model_name, '')",
            "COALESCE(model_version, '')",
            "COALESCE(agent_version, '')",
        )
        where.append("(" + " OR ".join(f"LOWER({f}) LIKE ? ESCAPE '\\'" for f in fields) + ")")
        params.extend([_like(search)] * len(fields))
    return (f" WHERE {' AND '.join(where)}" if where else ""), params


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class SqlOverview(SqlBase):
    """The dashboard half of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    _overview_totals: tuple[float, tuple[Any, ...]] | None = None

    def fleet_overview(
        self,
        *,
        online: bool | None = None,
        model_version: str | None = None,
        search: str | None = None,
        drifted: bool | None = None,
        sort: OverviewSort = "device_id",
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
        window_s: int = 300,
        now: float | None = None,
    ) -> OverviewPage:
        clause, params = _filters(online, model_version, search, drifted)
        now = time.time() if now is None else now
        since = now - window_s
        key, key_param, nullable = _SORT_KEYS[sort]
        key_params: list[object] = [] if key_param is None else [since if key_param == "since" else key_param]
        # Devices that never reported a figure sort last either way (only where a key can be NULL: the
        # clause keeps SQLite from walking an index in order).
        direction = f"{'DESC' if descending else 'ASC'}{' NULLS LAST' if nullable else ''}"
        # The inner select picks the page by one key; only the page's rows get every figure computed.
        page_sql = (
            f"SELECT {_COLUMNS} FROM (SELECT d.device_id AS page_id, {key} AS sort_key FROM devices d{clause}"
            f" ORDER BY sort_key {direction}, d.device_id LIMIT ? OFFSET ?) p"
            f" JOIN devices d ON d.device_id = p.page_id ORDER BY p.sort_key {direction}, d.device_id"
        )
        metric_params: Sequence[object] = (*_METRIC_PARAMS, since, since)
        with self._conn() as conn:
            rows = conn.rows(page_sql, [*metric_params, *key_params, *params, limit, offset])
            matched = int(conn.rows(f"SELECT COUNT(*) FROM devices{clause}", params)[0][0])
            totals = self._fleet_totals(conn)
            versions = conn.rows(_VERSIONS)
        total, up, drift_count = int(totals[0]), int(totals[1]), int(totals[2])
        weighted, weight = _float(totals[4]), _float(totals[5])
        counts = OverviewCounts(
            total=total,
            online=up,
            offline=total - up,
            drifted=drift_count,
            throughput=_float(totals[3]) or 0.0,
            fallback_share=(weighted / weight) if weighted is not None and weight else None,
        )
        devices = [
            OverviewDevice(
                device_id=str(r[0]),
                online=bool(r[1]),
                last_seen=float(r[2]),
                status_changed_at=_float(r[3]),
                agent_version=r[4],
                model_name=r[5],
                model_version=r[6],
                drifted=bool(r[7]),
                drift_score=_float(r[8]),
                throughput=_float(r[9]),
                p95_latency_ms=_float(r[10]),
                fallback_share=_float(r[11]),
                metrics_at=_float(r[12]),
                results_recent=int(r[13] or 0),
                top_label=r[14],
                drift_at=_float(r[15]),
            )
            for r in rows
        ]
        return OverviewPage(
            ts=now,
            counts=counts,
            model_versions={str(r[0]): int(r[1]) for r in versions},
            matched=matched,
            offset=offset,
            limit=limit,
            window_s=window_s,
            devices=devices,
        )

    def _fleet_totals(self, conn: SqlConnection) -> tuple[Any, ...]:
        cached = self._overview_totals
        if cached is not None and time.monotonic() - cached[0] < TOTALS_TTL_S:
            return cached[1]
        totals = tuple(conn.rows(_TOTALS, _TOTALS_PARAMS)[0])
        self._overview_totals = (time.monotonic(), totals)
        return totals
