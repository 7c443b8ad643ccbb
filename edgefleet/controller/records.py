"""Decoded uplink messages in the controller's own terms, and the pure folds over them.

The ingest turns protocol envelopes into :class:`IngestMessage` objects; the data-access layer
stores them. Keeping this seam free of the wire format lets the storage be tested without MQTT.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from edgefleet.types import JSONValue

__all__ = [
    "LATENCY_BIN_EDGES_MS",
    "CommandAck",
    "DriftItem",
    "IngestMessage",
    "LateAnswer",
    "LatencyBinRow",
    "ResultBucketRow",
    "StatusUpdate",
    "StoredEvent",
    "StoredResult",
    "TelemetryItem",
    "aggregate_results",
    "latency_bin",
    "percentile_from_bins",
]

# Upper edges (ms) of the latency histogram kept per device per bucket; the last bin is open-ended.
LATENCY_BIN_EDGES_MS: tuple[float, ...] = (
    0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000,
)  # fmt: skip


class TelemetryItem(NamedTuple):
    # Tuples: the ingest creates thousands of these per second.
    metric: str
    ts: float
    value: float


class StoredResult(NamedTuple):
    """One inference result as the controller stores it (the wire's is ``protocol.ResultItem``)."""

    ts: float
    label: str
    latency_ms: float | None
    answered_by: str
    model_version: str = ""
    fallback_reason: str | None = None


class LateAnswer(NamedTuple):
    """A late cloud answer for a result the device stored earlier (``result_update`` kind)."""

    result_id: int
    ts: float
    stream: str
    window_seq: int | None
    edge_label: str
    edge_model_version: str
    fallback_reason: str | None
    cloud_label: str
    cloud_score: float | None
    cloud_model_version: str


@dataclass(frozen=True)
class StatusUpdate:
    online: bool
    ts: float
    agent_version: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    hardware: dict[str, JSONValue] | None = None
    fallback: dict[str, JSONValue] | None = None
    """The agent's ``status.fallback`` (None: not reported; the last one reported stays)."""
    name: str | None = None
    tags: list[str] | None = None


@dataclass(frozen=True)
class StoredEvent:
    """One device event as the controller stores it (the wire's is ``protocol.EventItem``)."""

    ts: float
    kind: str
    level: str
    message: str
    data: dict[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftItem:
    ts: float
    drifted: bool
    score: float | None
    details: dict[str, JSONValue] = field(default_factory=dict)
    model_name: str | None = None
    model_version: str | None = None
    counts: dict[str, JSONValue] | None = None
    """Raw counts of a version 2 report (:mod:`edgefleet.controller.drift_counts`), merged by addition."""


@dataclass(frozen=True)
class CommandAck:
    command_id: str
    device_id: str
    ok: bool
    ts: float
    detail: str | None = None
    status: str = ""
    """The command status this ack sets (``acked``, ``done``, ``failed``, ``expired``, ``unknown``)."""

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", "acked" if self.ok else "failed")


@dataclass
class IngestMessage:
    """One valid uplink message.

    ``message_id`` is unique per device and stable across resends; None marks a message that is
    never de-duplicated (live status and last will, whose latest arrival is the state).
    """

    device_id: str
    message_id: str | None
    kind: str
    received_at: float
    sent_at: float | None = None
    telemetry: list[TelemetryItem] = field(default_factory=list)
    results: list[StoredResult] = field(default_factory=list)
    status: StatusUpdate | None = None
    events: list[StoredEvent] = field(default_factory=list)
    drift: list[DriftItem] = field(default_factory=list)
    acks: list[CommandAck] = field(default_factory=list)
    parts: int = 1
    """How many parts the device's outbox row travels in (delivery tracking, see dal/sql_delivery.py)."""
    outbox_floor: int | None = None
    """From a status: the lowest outbox id the device still holds."""
    skipped_ids: list[int] = field(default_factory=list)
    """Outbox ids the device reports it will never send (a ``sync.outbox_dropped`` event)."""
    late_answers: list[LateAnswer] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.device_id, self.message_id or "")


@dataclass
class ResultBucketRow:
    device_id: str
    bucket_start: float
    label: str
    model_version: str
    count: int = 0
    cloud_count: int = 0
    latency_sum_ms: float = 0.0
    latency_count: int = 0
    latency_max_ms: float = 0.0


@dataclass
class LatencyBinRow:
    device_id: str
    bucket_start: float
    bin: int
    count: int = 0


def latency_bin(latency_ms: float) -> int:
    """Index of the histogram bin holding ``latency_ms`` (last index: above every edge)."""
    return bisect.bisect_left(LATENCY_BIN_EDGES_MS, latency_ms)


def aggregate_results(
    messages: Iterable[IngestMessage], bucket_s: int
) -> tuple[list[ResultBucketRow], list[LatencyBinRow]]:
    """Fold result items into per (device, bucket, label, model version) counts and latency bins."""
    buckets: dict[tuple[str, float, str, str], ResultBucketRow] = {}
    bins: dict[tuple[str, float, int], LatencyBinRow] = {}
    for message in messages:
        for item in message.results:
            start = math.floor(item.ts / bucket_s) * bucket_s
            key = (message.device_id, float(start), item.label, item.model_version)
            row = buckets.get(key)
            if row is None:
                row = buckets[key] = ResultBucketRow(
                    message.device_id, float(start), item.label, item.model_version
                )
            row.count += 1
            if item.answered_by == "cloud":
                row.cloud_count += 1
            if item.latency_ms is not None and math.isfinite(item.latency_ms):
                row.latency_sum_ms += item.latency_ms
                row.latency_count += 1
                row.latency_max_ms = max(row.latency_max_ms, item.latency_ms)
                bin_key = (message.device_id, float(start), latency_bin(item.latency_ms))
                bin_row = bins.get(bin_key)
                if bin_row is None:
                    bin_row = bins[bin_key] = LatencyBinRow(*bin_key)
                bin_row.count += 1
    return list(buckets.values()), list(bins.values())


def percentile_from_bins(counts: Sequence[tuple[int, int]], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram given as (bin, count) pairs.

    Interpolates linearly inside the bin that holds the quantile; the open last bin reports its lower edge.
    """
    per_bin: dict[int, int] = {}
    for index, count in counts:
        per_bin[index] = per_bin.get(index, 0) + count
    total = sum(per_bin.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(per_bin):
        count = per_bin[index]
        if seen + count >= rank:
            lower = LATENCY_BIN_EDGES_MS[index - 1] if index > 0 else 0.0
            if index >= len(LATENCY_BIN_EDGES_MS):
                return lower
            upper = LATENCY_BIN_EDGES_MS[index]
            fraction = (rank - seen) / count if count else 1.0
            return lower + (upper - lower) * min(max(fraction, 0.0), 1.0)
        seen += count
    return LATENCY_BIN_EDGES_MS[-1]
