"""The values that cross the store's API: what the pipeline writes and what sync reads back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edgefleet.types import AnsweredBy, Timestamp

__all__ = [
    "PRIORITY_EVENTS",
    "PRIORITY_RESULTS",
    "PRIORITY_TELEMETRY",
    "MetricSample",
    "OutboxItem",
    "ResultRecord",
    "StoreStats",
]

# Outbox priorities (lower drains first): events and status are small and urgent, results bulky.
PRIORITY_EVENTS = 0
PRIORITY_TELEMETRY = 1
PRIORITY_RESULTS = 2


@dataclass
class ResultRecord:
    """One inference result for one window of one stream."""

    stream: str
    window_start: Timestamp
    window_end: Timestamp
    model_name: str
    model_version: str
    label: str | None
    score: float | None
    outputs: list[float] | None
    latency_ms: float
    answered_by: AnsweredBy = "edge"
    fallback_reason: str | None = None
    window_seq: int | None = None
    created_at: Timestamp = field(default_factory=time.time)


@dataclass
class MetricSample:
    """One point of a time series, e.g. ``MetricSample(ts, "infer.latency_ms", 3.2, {"stream": "imu"})``."""

    ts: Timestamp
    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class OutboxItem:
    """One pending message for the sync component.

    ``payload`` is the enqueued dict, except for kind ``"results"`` where it is the list of
    result rows the item references (resolved at peek time, so no result is stored twice).
    ``id`` is never reused, so sync can use it as the message id for exactly-once de-dup.
    """

    id: int
    kind: str
    priority: int
    created_at: Timestamp
    payload: dict[str, Any] | list[dict[str, Any]]
    approx_bytes: int


@dataclass
class StoreStats:
    """Size, backlog and write volume of a store, as ``edgefleet store stats`` shows them."""

    path: str
    schema_version: int
    size_bytes: int
    """Database file plus its -wal file, as on disk."""
    page_size: int
    page_count: int
    freelist: int
    """Free pages inside the file (reused by new rows, or returned by an incremental vacuum)."""
    wal_bytes: int
    rows: dict[str, int]
    """Rows per table (results, metrics, events, outbox), exact; the first three are read from
    counters kept with every insert and delete, not counted (``agent/store/rowcounts.py``)."""
    unsynced_results: int
    outbox_backlog: dict[str, int]
    bytes_written_total: int
    """Bytes this Store wrote since it was opened: WAL frames appended plus pages checkpointed."""
    bytes_written_per_hour: float
    """``bytes_written_total`` over the last hour (extrapolated while open for less than an hour)."""
    bytes_written_source: str
    """Where the byte counts come from: "thread-io" (Linux per-thread accounting), "process-io"
    (psutil, whole process) or "unavailable"."""
    evicted_unsynced_total: int
