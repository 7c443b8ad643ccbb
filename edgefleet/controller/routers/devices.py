"""``/api/devices``: the registry and each device's telemetry, drift reports, events and results."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet.controller.dependencies import Context, Device, Reader
from edgefleet.controller.routers.fallback import device_fallback_since
from edgefleet.controller.routers.windows import results_summary, since_epoch
from edgefleet.controller.schemas import (
    DeviceDetail,
    DeviceList,
    DeviceSort,
    DriftReport,
    EventRecord,
    ResultsSummary,
    TelemetrySeries,
)

__all__ = ["MetricList", "router"]

router = APIRouter(prefix="/api/devices", tags=["devices"])


class MetricList(BaseModel):
    device_id: str
    metrics: list[str]


@router.get("")
def list_devices(
    found: Reader,
    context: Context,
    online: bool | None = None,
    model_version: str | None = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    sort: DeviceSort = "device_id",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DeviceList:
    return context.database.list_devices(
        online=online,
        model_version=model_version,
        search=search,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=offset,
    )


@router.get("/{device_id}")
def get_device(device_id: str, found: Reader, context: Context) -> DeviceDetail:
    detail = context.database.device_detail(device_id)
    if detail is None:
        raise StarletteHTTPException(404, f"no device {device_id!r} is known to this controller")
    detail.fallback = device_fallback_since(context, device_id, None, None)
    return detail


@router.get("/{device_id}/metrics")
def device_metrics(device_id: Device, found: Reader, context: Context) -> MetricList:
    return MetricList(device_id=device_id, metrics=context.database.telemetry_metrics(device_id))


@router.get("/{device_id}/telemetry")
def device_telemetry(
    device_id: Device,
    found: Reader,
    context: Context,
    metric: Annotated[str, Query(min_length=1, max_length=300)],
    since: float | None = None,
    until: float | None = None,
    resolution: Literal["auto", "raw", "minute", "hour"] = "auto",
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> TelemetrySeries:
    now = context.clock()
    return context.database.telemetry(
        device_id,
        metric,
        since=since_epoch(since, now, 3600),
        until=until if until is not None else now + 1,
        resolution=resolution,
        raw_horizon=now - context.config.retention.raw_telemetry_s,
        limit=limit,
    )


@router.get("/{device_id}/drift")
def device_drift(
    device_id: Device,
    found: Reader,
    context: Context,
    since: float | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[DriftReport]:
    since_ts = since_epoch(since, context.clock(), 86_400)
    return context.database.drift_reports(device_id, since=since_ts, limit=limit)


@router.get("/{device_id}/events")
def device_events(
    device_id: Device,
    found: Reader,
    context: Context,
    since: float | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[EventRecord]:
    since_ts = since_epoch(since, context.clock(), 86_400)
    return context.database.events(device_id, since=since_ts, kind=kind, limit=limit)


@router.get("/{device_id}/results/summary")
def device_results(
    device_id: Device,
    found: Reader,
    context: Context,
    since: float | None = None,
    until: float | None = None,
    bucket_s: Annotated[int | None, Query(ge=1, le=86_400)] = None,
) -> ResultsSummary:
    return results_summary(context, device_id, since, until, bucket_s)
