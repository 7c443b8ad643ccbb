"""Hard examples (migration 4): windows sent to the cloud with both answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edgefleet.controller.dal.sql_base import SqlBase
from edgefleet.controller.hard_examples import HardExample

__all__ = ["SqlHardExamples"]

_COLUMNS = (
    "id, device_id, request_id, answered_at, stream, window_start, window_end, fallback_reason,"
    " edge_label, edge_score, cloud_label, cloud_score, model_name, model_version, shape"
)


def _example(row: tuple[Any, ...], data: bytes | None) -> HardExample:
    return HardExample(
        id=int(row[0]),
        device_id=row[1],
        request_id=row[2],
        answered_at=float(row[3]),
        stream=row[4],
        window_start=float(row[5]),
        window_end=float(row[6]),
        fallback_reason=row[7],
        edge_label=row[8],
        edge_score=None if row[9] is None else float(row[9]),
        cloud_label=row[10],
        cloud_score=None if row[11] is None else float(row[11]),
        model_name=row[12],
        model_version=row[13],
        shape=tuple(int(v) for v in json.loads(row[14])),
        data=data,
    )


class SqlHardExamples(SqlBase):
    """The hard-examples part of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    def store_hard_examples(self, examples: Sequence[HardExample]) -> int:
        if not examples:
            return 0
        with self._tx() as conn:
            conn.run_many(
                "INSERT INTO hard_examples (device_id, request_id, answered_at, stream, window_start,"
                " window_end, fallback_reason, edge_label, edge_score, cloud_label, cloud_score,"
                " model_name, model_version, shape, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.device_id,
                        e.request_id,
                        e.answered_at,
                        e.stream,
                        e.window_start,
                        e.window_end,
                        e.fallback_reason,
                        e.edge_label,
                        e.edge_score,
                        e.cloud_label,
                        e.cloud_score,
                        e.model_name,
                        e.model_version,
                        json.dumps(list(e.shape)),
                        e.data or b"",
                    )
                    for e in examples
                ],
            )
        return len(examples)

    def hard_examples(
        self,
        *,
        device_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
        with_windows: bool = False,
    ) -> tuple[list[HardExample], int]:
        where: list[str] = []
        params: list[object] = []
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        if since is not None:
            where.append("answered_at >= ?")
            params.append(since)
        if until is not None:
            where.append("answered_at < ?")
            params.append(until)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        columns = _COLUMNS + (", data" if with_windows else "")
        with self._conn() as conn:
            total = int(conn.rows(f"SELECT COUNT(*) FROM hard_examples{clause}", params)[0][0])
            rows = conn.rows(
                f"SELECT {columns} FROM hard_examples{clause} ORDER BY answered_at, id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return [_example(r, bytes(r[15]) if with_windows else None) for r in rows], total
