"""The cloud fallback per device and fleet-wide, as the API and the dashboard show it.

Two sources, each for what it tells best:

* **stored results** (every result says ``answered_by`` and ``fallback_reason``; the controller
  counts them per device, minute and reason): the cloud share and its reasons over any time range,
  exact, whatever the agent's uptime;
* the agent's latest **``status.fallback``** (counters since the agent started, the budget's use
  right now, the cloud round trip's p50/p95): budget use and cloud latency, which results do not
  carry.

A reason is what the device stored: ``low_confidence`` on a cloud answer, ``low_confidence:timeout``
(``<why asked>:<outcome>``) on an edge answer kept because the cloud could not be used.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from edgefleet.types import JSONValue

__all__ = ["DeviceFallback", "FallbackReason", "FleetFallback", "device_fallback", "fleet_fallback"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FallbackReason(_Out):
    reason: str
    """As stored: ``low_confidence`` (cloud answered) or ``low_confidence:timeout`` (edge kept)."""
    answered_by: str
    count: int


class DeviceFallback(_Out):
    device_id: str
    results: int
    """Results stored in the range."""
    cloud_answers: int
    cloud_share: float | None
    """``cloud_answers / results`` (None without results)."""
    escalated: int
    """Results whose window the device meant to send to the cloud (any outcome)."""
    reasons: list[FallbackReason]
    status: dict[str, Any] | None = None
    """The agent's last ``status.fallback`` as it sent it."""
    status_at: float | None = None
    requests_budget_use: float | None = None
    """``requests_last_min / max_requests_per_min`` from the status (None: no budget or no status)."""
    bytes_budget_use: float | None = None
    """``bytes_last_hour / max_bytes_per_hour``."""
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


class FleetFallback(_Out):
    since: float
    until: float
    results: int
    cloud_answers: int
    cloud_share: float | None
    escalated: int
    reasons: list[FallbackReason]
    devices_with_status: int
    devices_at_budget: int
    """Devices whose requests or bytes budget is used up (use >= 1) in their last status."""
    latency_p50_ms_median: float | None
    """The median of the devices' cloud p50 latencies."""
    latency_p95_ms_max: float | None
    """The worst device's cloud p95 latency."""
    devices: list[DeviceFallback]


def _number(status: Mapping[str, JSONValue] | None, key: str) -> float | None:
    value = None if status is None else status.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _use(status: Mapping[str, JSONValue] | None, used: str, limit: str) -> float | None:
    spent, cap = _number(status, used), _number(status, limit)
    if spent is None or cap is None or cap <= 0:
        return None
    return spent / cap


def _sorted(counts: Mapping[tuple[str, str], int]) -> list[FallbackReason]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [FallbackReason(reason=r, answered_by=by, count=n) for (r, by), n in ordered]


def device_fallback(
    device_id: str,
    *,
    results: int,
    cloud_answers: int,
    reasons: Iterable[tuple[str, str, int]],
    status: dict[str, JSONValue] | None,
    status_at: float | None,
) -> DeviceFallback:
    """One device's view from its stored counts (``reasons``: (reason, answered_by, count)) and status."""
    merged: dict[tuple[str, str], int] = {}
    for reason, answered_by, count in reasons:
        merged[(reason, answered_by)] = merged.get((reason, answered_by), 0) + count
    return DeviceFallback(
        device_id=device_id,
        results=results,
        cloud_answers=cloud_answers,
        cloud_share=(cloud_answers / results) if results else None,
        escalated=sum(merged.values()),
        reasons=_sorted(merged),
        status=status,
        status_at=status_at,
        requests_budget_use=_use(status, "requests_last_min", "max_requests_per_min"),
        bytes_budget_use=_use(status, "bytes_last_hour", "max_bytes_per_hour"),
        latency_p50_ms=_number(status, "latency_p50_ms"),
        latency_p95_ms=_number(status, "latency_p95_ms"),
    )


def fleet_fallback(devices: list[DeviceFallback], *, since: float, until: float) -> FleetFallback:
    """The fleet's view: counts added, reasons merged, latency and budget summarised over devices."""
    merged: dict[tuple[str, str], int] = {}
    for device in devices:
        for r in device.reasons:
            merged[(r.reason, r.answered_by)] = merged.get((r.reason, r.answered_by), 0) + r.count
    results = sum(d.results for d in devices)
    cloud = sum(d.cloud_answers for d in devices)
    p50s = [d.latency_p50_ms for d in devices if d.latency_p50_ms is not None]
    p95s = [d.latency_p95_ms for d in devices if d.latency_p95_ms is not None]
    at_budget = [
        d
        for d in devices
        if (d.requests_budget_use is not None and d.requests_budget_use >= 1)
        or (d.bytes_budget_use is not None and d.bytes_budget_use >= 1)
    ]
    return FleetFallback(
        since=since,
        until=until,
        results=results,
        cloud_answers=cloud,
        cloud_share=(cloud / results) if results else None,
        escalated=sum(merged.values()),
        reasons=_sorted(merged),
        devices_with_status=sum(1 for d in devices if d.status is not None),
        devices_at_budget=len(at_budget),
        latency_p50_ms_median=statistics.median(p50s) if p50s else None,
        latency_p95_ms_max=max(p95s) if p95s else None,
        devices=devices,
    )
