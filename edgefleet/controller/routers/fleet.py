"""The whole fleet at once: summary counts, result summaries, events and ingest statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet.controller.dependencies import Context, Reader
from edgefleet.controller.routers.windows import results_summary, since_epoch
from edgefleet.controller.schemas import EventRecord, FleetSummary, IngestStatsOut, ResultsSummary

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["fleet"])


@router.get("/fleet/summary")
def fleet_summary(
    found: Reader, context: Context, window_s: Annotated[int, Query(ge=60, le=7 * 86_400)] = 300
) -> FleetSummary:
    summary = context.database.fleet_summary(now=context.clock(), window_s=window_s)
    if context.ingest_stats is not None:
        summary.ingest = context.ingest_stats()
    return summary


@router.get("/results/summary")
def fleet_results(
    found: Reader,
    context: Context,
    since: float | None = None,
    until: float | None = None,
    bucket_s: Annotated[int | None, Query(ge=1, le=86_400)] = None,
) -> ResultsSummary:
    return results_summary(context, None, since, until, bucket_s)


@router.get("/events")
def fleet_events(
    found: Reader,
    context: Context,
    since: float | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[EventRecord]:
    since_ts = since_epoch(since, context.clock(), 86_400)
    return context.database.events(None, since=since_ts, kind=kind, limit=limit)


@router.get("/ingest/stats")
def ingest_stats(found: Reader, context: Context) -> IngestStatsOut:
    if context.ingest_stats is None:
        raise StarletteHTTPException(404, "this controller runs no ingest")
    return context.ingest_stats()
