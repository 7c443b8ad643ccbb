"""``/api/fleet/fallback`` and ``/api/devices/{id}/fallback``: cloud share, reasons, budget use and
cloud latency (:mod:`edgefleet.controller.fallback_stats`)."""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet.controller.context import ControllerContext
from edgefleet.controller.dependencies import Context, Device, Reader
from edgefleet.controller.fallback_stats import DeviceFallback, FleetFallback, fleet_fallback
from edgefleet.controller.routers.windows import since_epoch

__all__ = ["device_fallback_since", "router"]

router = APIRouter(prefix="/api", tags=["fallback"])

_DEFAULT_WINDOW_S = 86_400.0


def device_fallback_since(
    context: ControllerContext, device_id: str, since: float | None, until: float | None
) -> DeviceFallback:
    now = context.clock()
    start, end = since_epoch(since, now, _DEFAULT_WINDOW_S), until if until is not None else now + 1
    found = context.database.fallback_stats(device_id, since=start, until=end)
    if found:
        return found[0]
    return DeviceFallback(
        device_id=device_id, results=0, cloud_answers=0, cloud_share=None, escalated=0, reasons=[]
    )


@router.get("/fleet/fallback")
def fleet(
    found: Reader, context: Context, since: float | None = None, until: float | None = None
) -> FleetFallback:
    """Every device with results in [since, until) (default: the last 24 h) or a fallback status."""
    now = context.clock()
    start, end = since_epoch(since, now, _DEFAULT_WINDOW_S), until if until is not None else now + 1
    return fleet_fallback(
        context.database.fallback_stats(None, since=start, until=end), since=start, until=end
    )


@router.get("/devices/{device_id}/fallback")
def device(
    device_id: Device, found: Reader, context: Context, since: float | None = None, until: float | None = None
) -> DeviceFallback:
    return device_fallback_since(context, device_id, since, until)
