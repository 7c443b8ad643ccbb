"""The dashboard's fleet table as data: one page of devices with their latest figures, and totals.

``Database.fleet_overview`` answers it (SQL in :mod:`edgefleet.controller.dal.sql_overview`);
``GET /api/dashboard/overview`` serves it (:mod:`edgefleet.controller.routers.dashboard`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["OVERVIEW_METRICS", "OverviewCounts", "OverviewDevice", "OverviewPage", "OverviewSort"]

OverviewSort = Literal[
    "device_id",
    "online",
    "model_version",
    "last_seen",
    "throughput",
    "p95_latency_ms",
    "fallback_share",
    "drifted",
    "results_recent",
]

# Telemetry names from docs/architecture.md; the unlabelled series is the device-wide figure.
OVERVIEW_METRICS: dict[str, str] = {
    "throughput": "throughput_windows_per_s",
    "p95_latency_ms": "inference_latency_ms_p95",
    "fallback_share": "fallback_share",
}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OverviewDevice(_Out):
    device_id: str
    online: bool
    last_seen: float
    status_changed_at: float | None
    agent_version: str | None
    model_name: str | None
    model_version: str | None
    drifted: bool
    """The verdict of the latest drift report; False also when there is none (see ``drift_at``)."""
    drift_score: float | None
    drift_at: float | None = None
    """When the latest drift report was made; None: the device never sent one (no drift data)."""
    throughput: float | None
    p95_latency_ms: float | None
    fallback_share: float | None
    metrics_at: float | None
    results_recent: int
    """Results stored for this device in the last ``window_s`` seconds."""
    top_label: str | None


class OverviewCounts(_Out):
    total: int
    online: int
    offline: int
    drifted: int
    throughput: float
    """Sum of the latest throughput (windows/s) of the online devices."""
    fallback_share: float | None
    """Throughput-weighted mean of the online devices' latest fallback share."""


class OverviewPage(_Out):
    ts: float
    counts: OverviewCounts
    model_versions: dict[str, int]
    matched: int
    offset: int
    limit: int
    window_s: int
    devices: list[OverviewDevice]
