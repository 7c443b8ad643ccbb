"""OTA campaign rows (controller migration 7): campaigns and the devices each one targets."""

from __future__ import annotations

import json
from typing import Any

from edgefleet.controller.dal.sql_base import SqlBase
from edgefleet.controller.ota_campaign_schemas import CampaignDevice, CampaignRecord

__all__ = ["SqlCampaigns"]

_CAMPAIGN_COLUMNS = (
    "campaign_id, bundle_name, bundle_version, target, stages, shadow_s, max_failures, device_timeout_s,"
    " status, stage, detail, created_by, created_at, updated_at"
)
_DEVICE_COLUMNS = (
    "campaign_id, device_id, position, stage, offer_id, offered_at, drifted_before, outcome, detail,"
    " rollback_command_id"
)


def _campaign(row: tuple[Any, ...]) -> CampaignRecord:
    return CampaignRecord(
        campaign_id=row[0],
        bundle_name=row[1],
        bundle_version=row[2],
        target=json.loads(row[3]),
        stages=json.loads(row[4]),
        shadow_s=float(row[5]),
        max_failures=int(row[6]),
        device_timeout_s=float(row[7]),
        status=row[8],
        stage=int(row[9]),
        detail=row[10],
        created_by=row[11],
        created_at=float(row[12]),
        updated_at=float(row[13]),
    )


def _member(row: tuple[Any, ...]) -> CampaignDevice:
    return CampaignDevice(
        campaign_id=row[0],
        device_id=row[1],
        position=int(row[2]),
        stage=int(row[3]),
        offer_id=row[4],
        offered_at=None if row[5] is None else float(row[5]),
        drifted_before=bool(row[6]),
        outcome=row[7],
        detail=row[8],
        rollback_command_id=row[9],
    )


class SqlCampaigns(SqlBase):
    """The campaign half of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    def put_campaign(self, campaign: CampaignRecord, devices: list[CampaignDevice]) -> None:
        c = campaign
        with self._tx() as conn:
            conn.run(
                f"INSERT INTO ota_campaigns ({_CAMPAIGN_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                (
                    c.campaign_id,
                    c.bundle_name,
                    c.bundle_version,
                    json.dumps(c.target, sort_keys=True),
                    json.dumps(c.stages),
                    c.shadow_s,
                    c.max_failures,
                    c.device_timeout_s,
                    c.status,
                    c.stage,
                    c.detail,
                    c.created_by,
                    c.created_at,
                    c.updated_at,
                ),
            )
            conn.run_many(
                f"INSERT INTO ota_campaign_devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.campaign_id,
                        d.device_id,
                        d.position,
                        d.stage,
                        d.offer_id,
                        d.offered_at,
                        int(d.drifted_before),
                        d.outcome,
                        d.detail,
                        d.rollback_command_id,
                    )
                    for d in devices
                ],
            )

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        with self._conn() as conn:
            rows = conn.rows(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM ota_campaigns WHERE campaign_id = ?", (campaign_id,)
            )
        return _campaign(rows[0]) if rows else None

    def list_campaigns(self, *, statuses: tuple[str, ...] = (), limit: int = 100) -> list[CampaignRecord]:
        """Newest first; only those in ``statuses`` when given."""
        where = f" WHERE status IN ({', '.join('?' * len(statuses))})" if statuses else ""
        with self._conn() as conn:
            rows = conn.rows(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM ota_campaigns{where}"
                f" ORDER BY created_at DESC LIMIT {int(limit)}",
                statuses,
            )
        return [_campaign(r) for r in rows]

    def update_campaign(
        self,
        campaign_id: str,
        *,
        at: float,
        status: str | None = None,
        stage: int | None = None,
        detail: str | None = None,
        only_if_status: tuple[str, ...] = (),
    ) -> bool:
        """Change what is given; with ``only_if_status`` only from one of those (False otherwise)."""
        guard = f" AND status IN ({', '.join('?' * len(only_if_status))})" if only_if_status else ""
        with self._tx() as conn:
            changed = conn.run(
                "UPDATE ota_campaigns SET status = COALESCE(?, status), stage = COALESCE(?, stage),"
                f" detail = COALESCE(?, detail), updated_at = ? WHERE campaign_id = ?{guard}",
                (status, stage, detail, at, campaign_id, *only_if_status),
            )
        return changed > 0

    def campaign_devices(self, campaign_id: str) -> list[CampaignDevice]:
        with self._conn() as conn:
            rows = conn.rows(
                f"SELECT {_DEVICE_COLUMNS} FROM ota_campaign_devices WHERE campaign_id = ? ORDER BY position",
                (campaign_id,),
            )
        return [_member(r) for r in rows]

    def update_campaign_device(self, device: CampaignDevice) -> None:
        d = device
        with self._tx() as conn:
            conn.run(
                "UPDATE ota_campaign_devices SET offer_id = ?, offered_at = ?, drifted_before = ?,"
                " outcome = ?, detail = ?, rollback_command_id = ? WHERE campaign_id = ? AND device_id = ?",
                (
                    d.offer_id,
                    d.offered_at,
                    int(d.drifted_before),
                    d.outcome,
                    d.detail,
                    d.rollback_command_id,
                    d.campaign_id,
                    d.device_id,
                ),
            )

    def ota_offer_states(self, offer_ids: list[str]) -> dict[str, tuple[str, float, str | None]]:
        """offer_id -> (state, progress, detail) as last reported by its device."""
        if not offer_ids:
            return {}
        marks = ", ".join("?" * len(offer_ids))
        with self._conn() as conn:
            rows = conn.rows(
                f"SELECT offer_id, state, progress, detail FROM ota_device_state WHERE offer_id IN ({marks})",
                offer_ids,
            )
        return {str(r[0]): (str(r[1]), float(r[2]), r[3]) for r in rows}
