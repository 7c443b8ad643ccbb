"""Fleet drift reads: the raw counts of every version 2 drift report in a time range."""

from __future__ import annotations

import json

from edgefleet.controller.dal.sql_base import SqlBase
from edgefleet.controller.drift_counts import DriftCountsRow

__all__ = ["SqlDrift"]

_MAX_ROWS = 200_000  # a bound on one merge (a year of five-minute reports from two devices)


class SqlDrift(SqlBase):
    """The fleet-drift half of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    def drift_counts(
        self,
        *,
        since: float,
        until: float,
        device_id: str | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
    ) -> list[DriftCountsRow]:
        where = ["counts IS NOT NULL", "ts >= ?", "ts < ?"]
        params: list[object] = [since, until]
        for column, value in (
            ("device_id", device_id),
            ("model_name", model_name),
            ("model_version", model_version),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT device_id, ts, model_name, model_version, counts FROM drift_reports"
                f" WHERE {' AND '.join(where)} ORDER BY ts, id LIMIT {_MAX_ROWS}",
                params,
            )
        return [
            DriftCountsRow(
                device_id=str(r[0]),
                ts=float(r[1]),
                model_name=None if r[2] is None else str(r[2]),
                model_version=None if r[3] is None else str(r[3]),
                counts=json.loads(r[4]),
            )
            for r in rows
        ]

    def drift_model_versions(self) -> list[tuple[str | None, str | None]]:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT DISTINCT model_name, model_version FROM drift_reports WHERE counts IS NOT NULL"
                " ORDER BY model_name, model_version LIMIT 1000"
            )
        return [(None if r[0] is None else str(r[0]), None if r[1] is None else str(r[1])) for r in rows]
