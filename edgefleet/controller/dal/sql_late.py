"""Late cloud answers (uplink kind ``result_update``): stored once per device result, read back.

A device attaches the cloud's late answer to a result it stored (and usually sent) earlier with
only its edge answer. The controller keeps no single results (they are aggregated into
``result_buckets``), so the update is kept beside them, keyed by the device's result id: the same
update arriving again, under a resent or a new message id, changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgefleet.controller.dal.sql_base import SqlBase, SqlConnection
from edgefleet.controller.records import IngestMessage, LateAnswer

__all__ = ["SqlLateAnswers"]


class SqlLateAnswers(SqlBase):
    """The late-answer half of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    def _store_late_answers(self, conn: SqlConnection, accepted: Sequence[IngestMessage]) -> None:
        rows = [
            (m.device_id, a.result_id, a.ts, m.received_at, a.stream, a.window_seq, a.edge_label,
             a.edge_model_version, a.fallback_reason, a.cloud_label, a.cloud_score, a.cloud_model_version)
            for m in accepted
            for a in m.late_answers
        ]  # fmt: skip
        if rows:
            conn.run_many(
                "INSERT INTO late_answers (device_id, result_id, ts, received_at, stream, window_seq,"
                " edge_label, edge_model_version, fallback_reason, cloud_label, cloud_score,"
                " cloud_model_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (device_id, result_id) DO NOTHING",
                rows,
            )

    def late_answers(self, device_id: str, *, limit: int = 100) -> list[LateAnswer]:
        """The device's late cloud answers, newest window first."""
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT result_id, ts, stream, window_seq, edge_label, edge_model_version, fallback_reason,"
                " cloud_label, cloud_score, cloud_model_version FROM late_answers WHERE device_id = ?"
                " ORDER BY ts DESC, result_id DESC LIMIT ?",
                (device_id, int(limit)),
            )
        return [LateAnswer(*row) for row in rows]
