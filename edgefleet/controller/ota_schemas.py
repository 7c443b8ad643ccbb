"""What the OTA part of the data-access layer returns and the HTTP API serves (issue 16)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgefleet.cloud_sync.protocol import OtaState

__all__ = ["BundleInfo", "BundleRegistration", "OfferRecord", "OtaDeviceState"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleInfo(_Out):
    """A bundle ``.tar`` the controller hosts (``ota_bundles``); one per (name, version)."""

    name: str
    version: str
    sha256: str
    size_bytes: int
    path: str
    signed_key_id: str | None = None
    created_at: float


class BundleRegistration(_Out):
    """``POST /api/ota/bundles``: a bundle ``.tar`` already on the controller's disk."""

    path: str = Field(description="absolute path of the bundle .tar on the controller host")


class OtaDeviceState(_Out):
    """A device's last reported OTA state for one offer (``ota_device_state``)."""

    device_id: str
    offer_id: str
    campaign_id: str | None = None
    bundle_name: str | None = None
    bundle_version: str | None = None
    state: OtaState
    progress: float = 0.0
    detail: str | None = None
    metrics: dict[str, Any] | None = None
    updated_at: float


class OfferRecord(_Out):
    """An offer sent (``ota_offers``): which device may fetch which bundle, until when."""

    offer_id: str
    device_id: str
    bundle_name: str
    bundle_version: str
    campaign_id: str | None = None
    created_at: float
    expires_at: float | None = None
