"""Staged OTA campaigns (issue 16): what is stored and what the API and the CLI show."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CampaignDevice",
    "CampaignRecord",
    "CampaignRequest",
    "CampaignStatus",
    "CampaignView",
    "DeviceOutcome",
]

CampaignStatus = Literal["running", "completed", "halted", "rolling_back", "rolled_back"]
"""``running`` offers stage after stage; ``halted`` stopped itself (too many failures);
``rolling_back`` waits for the controller to send ``rollback_model``; ``rolled_back`` sent them."""
DeviceOutcome = Literal["ok", "failed", "timeout"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CampaignRequest(BaseModel):
    """``POST /api/ota/campaigns``: exactly one of ``devices``, ``tag`` or ``all``."""

    model_config = ConfigDict(extra="forbid")

    bundle: str = Field(
        description="a registered bundle as NAME@VERSION, or the absolute path of a bundle .tar on the"
        " controller host (registered first)"
    )
    devices: list[str] = Field(default_factory=list, description="target these device ids")
    tag: str | None = Field(default=None, description="target the devices reporting this tag")
    all: bool = Field(default=False, description="target every known device")
    stages: list[float] = Field(
        default_factory=lambda: [100.0],
        description="cumulative percentages of the targets per stage, increasing, the last 100",
    )
    shadow_s: float = Field(
        default=0.0,
        ge=0,
        description="seconds each device runs the candidate beside its active model before activating it",
    )
    max_failures: int = Field(
        default=0, ge=0, description="failed devices tolerated; one more halts the campaign"
    )
    device_timeout_s: float = Field(
        default=900.0, gt=0, description="a device with no final state this long after its offer fails"
    )


class CampaignRecord(_Out):
    campaign_id: str
    bundle_name: str
    bundle_version: str
    target: dict[str, Any]
    stages: list[float]
    shadow_s: float = 0.0
    max_failures: int = 0
    device_timeout_s: float = 900.0
    status: CampaignStatus
    stage: int = 0
    """Index into ``stages`` of the stage being offered or watched."""
    detail: str | None = None
    created_by: str | None = None
    created_at: float
    updated_at: float


class CampaignDevice(_Out):
    campaign_id: str
    device_id: str
    position: int
    stage: int
    offer_id: str | None = None
    offered_at: float | None = None
    drifted_before: bool = False
    outcome: DeviceOutcome | None = None
    detail: str | None = None
    rollback_command_id: str | None = None
    state: str | None = Field(default=None, description="the device's last reported ota/progress state")
    progress: float | None = None
    name: str | None = None


class CampaignView(_Out):
    campaign: CampaignRecord
    devices: list[CampaignDevice]
    counts: dict[str, int] = Field(
        description="devices per state: pending (not offered yet), in_progress, ok, failed, rolled_back"
    )
