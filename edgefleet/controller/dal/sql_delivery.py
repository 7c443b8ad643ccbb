"""Delivery tracking: which of a device's outbox message_ids are stored, and which are lost.

Every stored uplink message (all its parts), and every id the device reported it will never send
(``sync.outbox_dropped``), joins the device's ``delivery_ranges`` (merged inclusive id ranges:
one row per device while nothing is missing). A device's status carries ``outbox_floor``, the
lowest outbox id it still holds. An id below the floor that no range covers has left the device
without reaching this database: it is lost (docs/cloud_sync.md, gap detection). Outbox ids are
shared by every kind of a device, so the ranges cover every stored kind, not only results.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgefleet.cloud_sync.acks import missing_ranges, to_ranges
from edgefleet.controller.dal.sql_base import SqlBase, SqlConnection
from edgefleet.controller.records import IngestMessage
from edgefleet.controller.schemas import DeliveryReport

__all__ = ["SqlDelivery"]

_REPORTED_RANGES = 100


def _outbox_id(message: IngestMessage) -> int | None:
    if not message.message_id:
        return None
    head, _, _ = message.message_id.partition(":")
    return int(head) if head.isdigit() else None


class SqlDelivery(SqlBase):
    """The delivery half of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    def _record_delivery(self, conn: SqlConnection, accepted: Sequence[IngestMessage]) -> None:
        """Runs inside the ingest transaction, after the devices rows were upserted: on PostgreSQL
        that row lock serialises two controllers merging the same device's ranges."""
        complete: dict[str, set[int]] = {}
        split: set[tuple[str, int, int]] = set()
        results: dict[str, int] = {}
        floors: dict[str, int] = {}
        for m in accepted:
            outbox_id = _outbox_id(m)
            if outbox_id is not None:
                if m.parts <= 1:
                    complete.setdefault(m.device_id, set()).add(outbox_id)
                else:
                    split.add((m.device_id, outbox_id, m.parts))
            if m.skipped_ids:
                complete.setdefault(m.device_id, set()).update(i for i in m.skipped_ids if i > 0)
            if m.results:
                results[m.device_id] = results.get(m.device_id, 0) + len(m.results)
            if m.outbox_floor is not None:
                floors[m.device_id] = max(floors.get(m.device_id, 0), m.outbox_floor)
        for device_id, outbox_id, parts in split:
            # A row travelling in parts is delivered once every part is (the claim of this very
            # transaction included).
            rows = conn.rows(
                "SELECT COUNT(*) FROM seen_messages WHERE device_id = ? AND message_id LIKE ?",
                (device_id, f"{outbox_id}:%"),
            )
            if int(rows[0][0]) >= parts:
                complete.setdefault(device_id, set()).add(outbox_id)
        for device_id, ids in complete.items():
            for first, last in to_ranges(ids):
                self._merge_range(conn, device_id, first, last)
        for device_id, count in sorted(results.items()):
            conn.run(
                "UPDATE devices SET results_received = results_received + ? WHERE device_id = ?",
                (count, device_id),
            )
        for device_id, floor in sorted(floors.items()):
            conn.run(
                "UPDATE devices SET outbox_floor = ? WHERE device_id = ?"
                " AND (outbox_floor IS NULL OR outbox_floor < ?)",
                (floor, device_id, floor),
            )

    @staticmethod
    def _merge_range(conn: SqlConnection, device_id: str, first: int, last: int) -> None:
        touching = (device_id, first - 1, last + 1)
        rows = conn.rows(
            "SELECT first_id, last_id FROM delivery_ranges WHERE device_id = ? AND last_id >= ?"
            " AND first_id <= ?",
            touching,
        )
        if rows:
            first = min(first, *(int(r[0]) for r in rows))
            last = max(last, *(int(r[1]) for r in rows))
            conn.run(
                "DELETE FROM delivery_ranges WHERE device_id = ? AND last_id >= ? AND first_id <= ?",
                touching,
            )
        conn.run(
            "INSERT INTO delivery_ranges (device_id, first_id, last_id) VALUES (?, ?, ?)",
            (device_id, first, last),
        )

    def delivery_report(self, device_id: str) -> DeliveryReport | None:
        with self._conn() as conn:
            device = conn.rows(
                "SELECT results_received, outbox_floor FROM devices WHERE device_id = ?", (device_id,)
            )
            if not device:
                return None
            ranges = [
                (int(r[0]), int(r[1]))
                for r in conn.rows(
                    "SELECT first_id, last_id FROM delivery_ranges WHERE device_id = ? ORDER BY first_id",
                    (device_id,),
                )
            ]
        floor = None if device[0][1] is None else int(device[0][1])
        missing = missing_ranges(ranges, floor) if floor is not None else []
        return DeliveryReport(
            results_received=int(device[0][0]),
            messages_received=sum(b - a + 1 for a, b in ranges),
            outbox_floor=floor,
            missing=missing[:_REPORTED_RANGES],
            missing_messages=sum(b - a + 1 for a, b in missing),
        )
