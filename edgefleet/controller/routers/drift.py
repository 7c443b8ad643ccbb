"""Fleet drift: reports' raw counts merged by addition per model version, then scored.

``GET /api/fleet/drift``: every model version (or one, ``model_version=``) over a time range,
optionally one device's reports only; ``GET /api/devices/{id}/drift/merged``: one device's. The
list of a device's reports stays at ``GET /api/devices/{id}/drift`` (router ``devices``).
"""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet.controller.context import ControllerContext
from edgefleet.controller.dependencies import Context, Device, Reader
from edgefleet.controller.drift_counts import FleetDrift, merge_drift
from edgefleet.controller.drift_references import references_for
from edgefleet.controller.routers.windows import since_epoch

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["drift"])

_DEFAULT_WINDOW_S = 86_400


def _merged(
    context: ControllerContext,
    *,
    device_id: str | None,
    model_name: str | None,
    model_version: str | None,
    since: float | None,
    until: float | None,
) -> FleetDrift:
    now = context.clock()
    since_ts = since_epoch(since, now, _DEFAULT_WINDOW_S)
    until_ts = until if until is not None else now + 1
    rows = context.database.drift_counts(
        since=since_ts,
        until=until_ts,
        device_id=device_id,
        model_name=model_name,
        model_version=model_version,
    )
    config = context.config.drift
    return merge_drift(
        rows, references_for(config), config.thresholds, since=since_ts, until=until_ts, device_id=device_id
    )


@router.get("/fleet/drift")
def fleet_drift(
    found: Reader,
    context: Context,
    model_version: str | None = None,
    model_name: str | None = None,
    device_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> FleetDrift:
    """Drift of the fleet per model version over ``[since, until)`` (default: the last day;
    a negative ``since`` is relative to now), scored from the merged raw counts."""
    return _merged(
        context,
        device_id=device_id,
        model_name=model_name,
        model_version=model_version,
        since=since,
        until=until,
    )


@router.get("/devices/{device_id}/drift/merged")
def device_drift_merged(
    device_id: Device,
    found: Reader,
    context: Context,
    since: float | None = None,
    until: float | None = None,
) -> FleetDrift:
    """One device's drift per model version over ``[since, until)``, from its merged raw counts."""
    return _merged(
        context, device_id=device_id, model_name=None, model_version=None, since=since, until=until
    )
