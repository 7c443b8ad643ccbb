"""OTA rows (controller migration 5): hosted bundles and each device's OTA state per offer."""

from __future__ import annotations

import json
from typing import Any

from edgefleet.controller.dal.sql_base import SqlBase
from edgefleet.controller.ota_schemas import BundleInfo, OfferRecord, OtaDeviceState

__all__ = ["SqlOta"]

_BUNDLE_COLUMNS = "name, version, sha256, size_bytes, path, signed_key_id, created_at"
_OFFER_COLUMNS = "offer_id, device_id, bundle_name, bundle_version, campaign_id, created_at, expires_at"
_STATE_COLUMNS = (
    "device_id, offer_id, campaign_id, bundle_name, bundle_version, state, progress, detail, metrics,"
    " updated_at"
)


def _bundle(row: tuple[Any, ...]) -> BundleInfo:
    return BundleInfo(
        name=row[0],
        version=row[1],
        sha256=row[2],
        size_bytes=int(row[3]),
        path=row[4],
        signed_key_id=row[5],
        created_at=float(row[6]),
    )


def _state(row: tuple[Any, ...]) -> OtaDeviceState:
    return OtaDeviceState(
        device_id=row[0],
        offer_id=row[1],
        campaign_id=row[2],
        bundle_name=row[3],
        bundle_version=row[4],
        state=row[5],
        progress=float(row[6]),
        detail=row[7],
        metrics=json.loads(row[8]) if row[8] else None,
        updated_at=float(row[9]),
    )


class SqlOta(SqlBase):
    """The OTA half of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    def put_ota_bundle(self, bundle: BundleInfo) -> BundleInfo:
        """Insert, or (same sha256) update the path; a different file under a taken name and
        version is refused with ValueError: devices compare versions, so a version is immutable."""
        with self._tx() as conn:
            rows = conn.rows(
                f"SELECT {_BUNDLE_COLUMNS} FROM ota_bundles WHERE name = ? AND version = ?",
                (bundle.name, bundle.version),
            )
            if rows:
                known = _bundle(rows[0])
                if known.sha256 != bundle.sha256:
                    raise ValueError(
                        f"bundle {bundle.name} {bundle.version} is already registered with sha256"
                        f" {known.sha256[:12]}...; this file has {bundle.sha256[:12]}..."
                    )
                conn.run(
                    "UPDATE ota_bundles SET path = ?, signed_key_id = ? WHERE name = ? AND version = ?",
                    (bundle.path, bundle.signed_key_id, bundle.name, bundle.version),
                )
                return known.model_copy(update={"path": bundle.path, "signed_key_id": bundle.signed_key_id})
            conn.run(
                f"INSERT INTO ota_bundles ({_BUNDLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    bundle.name,
                    bundle.version,
                    bundle.sha256,
                    bundle.size_bytes,
                    bundle.path,
                    bundle.signed_key_id,
                    bundle.created_at,
                ),
            )
        return bundle

    def get_ota_bundle(self, name: str, version: str) -> BundleInfo | None:
        with self._conn() as conn:
            rows = conn.rows(
                f"SELECT {_BUNDLE_COLUMNS} FROM ota_bundles WHERE name = ? AND version = ?", (name, version)
            )
        return _bundle(rows[0]) if rows else None

    def list_ota_bundles(self) -> list[BundleInfo]:
        with self._conn() as conn:
            rows = conn.rows(f"SELECT {_BUNDLE_COLUMNS} FROM ota_bundles ORDER BY name, created_at")
        return [_bundle(r) for r in rows]

    def put_ota_state(self, state: OtaDeviceState) -> None:
        """Upsert the device's state for the offer; bundle name/version given once are kept."""
        metrics = json.dumps(state.metrics) if state.metrics is not None else None
        with self._tx() as conn:
            conn.run(
                f"INSERT INTO ota_device_state ({_STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (device_id, offer_id) DO UPDATE SET"
                " campaign_id = COALESCE(excluded.campaign_id, ota_device_state.campaign_id),"
                " bundle_name = COALESCE(excluded.bundle_name, ota_device_state.bundle_name),"
                " bundle_version = COALESCE(excluded.bundle_version, ota_device_state.bundle_version),"
                " state = excluded.state, progress = excluded.progress, detail = excluded.detail,"
                " metrics = COALESCE(excluded.metrics, ota_device_state.metrics),"
                " updated_at = excluded.updated_at",
                (
                    state.device_id,
                    state.offer_id,
                    state.campaign_id,
                    state.bundle_name,
                    state.bundle_version,
                    state.state,
                    state.progress,
                    state.detail,
                    metrics,
                    state.updated_at,
                ),
            )

    def ota_states(self, device_id: str, *, limit: int = 20) -> list[OtaDeviceState]:
        """The device's OTA states, newest first."""
        with self._conn() as conn:
            rows = conn.rows(
                f"SELECT {_STATE_COLUMNS} FROM ota_device_state WHERE device_id = ?"
                f" ORDER BY updated_at DESC LIMIT {int(limit)}",
                (device_id,),
            )
        return [_state(r) for r in rows]

    def put_ota_offer(self, offer: OfferRecord) -> None:
        with self._tx() as conn:
            conn.run(
                f"INSERT INTO ota_offers ({_OFFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    offer.offer_id,
                    offer.device_id,
                    offer.bundle_name,
                    offer.bundle_version,
                    offer.campaign_id,
                    offer.created_at,
                    offer.expires_at,
                ),
            )

    def get_ota_offer(self, offer_id: str) -> OfferRecord | None:
        with self._conn() as conn:
            rows = conn.rows(f"SELECT {_OFFER_COLUMNS} FROM ota_offers WHERE offer_id = ?", (offer_id,))
        if not rows:
            return None
        r = rows[0]
        return OfferRecord(
            offer_id=r[0],
            device_id=r[1],
            bundle_name=r[2],
            bundle_version=r[3],
            campaign_id=r[4],
            created_at=float(r[5]),
            expires_at=None if r[6] is None else float(r[6]),
        )
