"""Query-parameter helpers that several routers share: time windows and result summaries."""

from __future__ import annotations

from edgefleet.controller.context import ControllerContext
from edgefleet.controller.schemas import ResultsSummary

__all__ = ["results_summary", "since_epoch"]


def since_epoch(value: float | None, now: float, default_window: float) -> float:
    """Epoch seconds; a negative value is relative to now (``since=-3600``: the last hour)."""
    if value is None:
        return now - default_window
    return now + value if value < 0 else value


def results_summary(
    context: ControllerContext,
    device_id: str | None,
    since: float | None,
    until: float | None,
    bucket_s: int | None,
) -> ResultsSummary:
    """One device's (or, with None, the fleet's) result counts, never finer than the stored buckets."""
    now = context.clock()
    stored_bucket = context.config.ingest.result_bucket_s
    bucket = max(stored_bucket, bucket_s or stored_bucket)
    return context.database.results_summary(
        device_id,
        since=since_epoch(since, now, 3600),
        until=until if until is not None else now + 1,
        bucket_s=bucket,
    )
