"""What the data-access layer returns and the HTTP API serves (one set of models for both)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from edgefleet.cloud_sync.protocol import CommandName
from edgefleet.controller.fallback_stats import DeviceFallback

__all__ = [
    "COMMAND_NAMES",
    "CommandName",
    "CommandRecord",
    "CommandRequest",
    "CommandStatus",
    "DeliveryReport",
    "DeviceDetail",
    "DeviceInfo",
    "DeviceList",
    "DeviceSort",
    "DriftReport",
    "EventRecord",
    "FleetSummary",
    "IngestStatsOut",
    "LabelSummary",
    "ResultsSummary",
    "Role",
    "TelemetryPoint",
    "TelemetrySeries",
    "TokenInfo",
]

Role = Literal["admin", "read"]
COMMAND_NAMES: tuple[CommandName, ...] = get_args(CommandName)
# pending/sent: controller side; the rest come from the device's ``command.<outcome>`` events.
CommandStatus = Literal["pending", "sent", "acked", "done", "failed", "expired", "unknown"]
DeviceSort = Literal["device_id", "last_seen", "first_seen", "online", "model_version", "agent_version"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceInfo(_Out):
    device_id: str
    online: bool
    first_seen: float
    last_seen: float
    status_changed_at: float | None = None
    agent_version: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    hardware: dict[str, Any] = Field(default_factory=dict)
    drifted: bool = False
    name: str | None = None
    tags: list[str] = Field(default_factory=list)


class DeviceList(_Out):
    devices: list[DeviceInfo]
    total: int


class CommandRecord(_Out):
    command_id: str
    device_id: str
    name: str
    args: dict[str, Any]
    status: CommandStatus
    created_at: float
    updated_at: float
    created_by: str | None = None
    detail: str | None = None


class DeliveryReport(_Out):
    """End-to-end delivery of one device's uplink messages (docs/cloud_sync.md, gap detection)."""

    results_received: int = 0
    messages_received: int = 0
    outbox_floor: int | None = None
    missing: list[tuple[int, int]] = Field(default_factory=list)
    """Inclusive message_id ranges the controller never stored and the device no longer holds
    (at most the first 100 ranges; ``missing_messages`` counts them all)."""
    missing_messages: int = 0


class DeviceDetail(_Out):
    device: DeviceInfo
    latest_telemetry: dict[str, float]
    recent_commands: list[CommandRecord]
    delivery: DeliveryReport | None = None
    fallback: DeviceFallback | None = None
    """The last 24 hours of cloud fallback (``GET /api/devices/{id}/fallback`` for other ranges)."""


class TelemetryPoint(_Out):
    ts: float
    value: float
    min: float | None = None
    max: float | None = None
    count: int = 1


class TelemetrySeries(_Out):
    device_id: str
    metric: str
    resolution: Literal["raw", "minute", "hour"]
    points: list[TelemetryPoint]


class DriftReport(_Out):
    id: int
    device_id: str
    ts: float
    drifted: bool
    score: float | None
    details: dict[str, Any]


class EventRecord(_Out):
    id: int
    device_id: str
    ts: float
    kind: str
    level: str
    message: str
    data: dict[str, Any]


class LabelSummary(_Out):
    label: str
    count: int
    cloud_count: int


class ResultsSummary(_Out):
    device_id: str | None
    since: float
    until: float
    bucket_s: int
    total: int
    cloud_count: int
    fallback_share: float | None = Field(description="answered_by cloud / total; null when no results")
    mean_latency_ms: float | None
    p95_latency_ms: float | None
    max_latency_ms: float | None
    labels: list[LabelSummary]
    buckets: list[dict[str, Any]] = Field(
        default_factory=list, description="per time bucket: {bucket_start, total, cloud_count, labels}"
    )


class IngestStatsOut(_Out):
    received: int
    stored: int
    duplicates: int
    malformed: int
    dropped_queue_full: int
    queue_depth: int
    batches: int
    lag_p50_ms: float | None
    lag_p99_ms: float | None


class FleetSummary(_Out):
    ts: float
    window_s: int
    devices_total: int
    online: int
    offline: int
    results_total: int
    throughput_per_s: float
    p95_latency_ms: float | None
    fallback_share: float | None
    drifted_devices: list[str]
    model_versions: dict[str, int]
    ingest: IngestStatsOut | None = None


class CommandRequest(_Out):
    name: CommandName
    args: dict[str, Any] = Field(default_factory=dict)


class TokenInfo(_Out):
    token_id: str
    name: str
    role: Role
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None
