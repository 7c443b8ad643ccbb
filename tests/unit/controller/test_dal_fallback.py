"""Cloud fallback counts in the data-access layer (real SQLite file, real PostgreSQL schema):
share and reasons from stored results over a chosen range, budget and latency from the last
``status.fallback``, duplicates not counted twice, an older status never replacing a newer one,
retention deleting old reason counts."""

from __future__ import annotations

import pytest

from edgefleet.controller.dal import Database, RetentionCutoffs
from edgefleet.controller.fallback_stats import fleet_fallback
from edgefleet.controller.records import IngestMessage, StatusUpdate, StoredResult

pytestmark = pytest.mark.unit

T0 = 1_699_999_200.0


def results(device: str, message_id: str, at: float, answers: list[tuple[str, str | None]]) -> IngestMessage:
    items = [
        StoredResult(ts=at + i * 0.01, label="curl", latency_ms=5.0, answered_by=by, fallback_reason=why)
        for i, (by, why) in enumerate(answers)
    ]
    return IngestMessage(
        device_id=device, message_id=message_id, kind="results", received_at=at, results=items
    )


def status(device: str, at: float, fallback: dict[str, object] | None) -> IngestMessage:
    update = StatusUpdate(online=True, ts=at, fallback=fallback)  # type: ignore[arg-type]
    return IngestMessage(device_id=device, message_id=None, kind="status", received_at=at, status=update)


FALLBACK = {
    "sent": 40,
    "requests_last_min": 30,
    "max_requests_per_min": 30,
    "bytes_last_hour": 10_000,
    "max_bytes_per_hour": 40_000,
    "latency_p50_ms": 21.5,
    "latency_p95_ms": 80.0,
    "reasons": {"low_confidence": 40},
}


def test_share_and_reasons_come_from_results_budget_and_latency_from_status(database: Database) -> None:
    a: list[tuple[str, str | None]] = (
        [("cloud", "low_confidence")] * 3 + [("edge", "low_confidence:timeout")] * 2 + [("edge", None)] * 5
    )
    batch = [results("dev-a", "1:0", T0, a), results("dev-b", "1:0", T0, [("edge", None)] * 4)]
    database.ingest(batch, result_bucket_s=60)
    database.ingest([results("dev-a", "1:0", T0, a)], result_bucket_s=60)  # a resend: not counted again
    database.ingest([results("dev-a", "2:0", T0 + 3600, [("edge", "ood:budget")])], result_bucket_s=60)
    database.ingest([status("dev-a", T0 + 10, FALLBACK)], result_bucket_s=60)
    database.ingest(
        [status("dev-a", T0 + 5, {"latency_p95_ms": 999.0})], result_bucket_s=60
    )  # older: ignored

    [dev_a] = database.fallback_stats("dev-a", since=T0 - 60, until=T0 + 60)
    assert (dev_a.results, dev_a.cloud_answers, dev_a.escalated) == (10, 3, 5)
    assert dev_a.cloud_share == pytest.approx(0.3)
    assert [(r.reason, r.answered_by, r.count) for r in dev_a.reasons] == [
        ("low_confidence", "cloud", 3),
        ("low_confidence:timeout", "edge", 2),
    ]
    assert dev_a.requests_budget_use == pytest.approx(1.0)
    assert dev_a.bytes_budget_use == pytest.approx(0.25)
    assert (dev_a.latency_p50_ms, dev_a.latency_p95_ms) == (21.5, 80.0)
    assert dev_a.status_at == T0 + 10

    # A later range sees only the later result; the status (the agent's now) is the same.
    [later] = database.fallback_stats("dev-a", since=T0 + 3000, until=T0 + 4000)
    assert (later.results, later.cloud_answers) == (1, 0)
    assert [(r.reason, r.count) for r in later.reasons] == [("ood:budget", 1)]

    everyone = database.fallback_stats(None, since=T0 - 60, until=T0 + 60)
    assert [d.device_id for d in everyone] == ["dev-a", "dev-b"]
    fleet = fleet_fallback(everyone, since=T0 - 60, until=T0 + 60)
    assert (fleet.results, fleet.cloud_answers, fleet.devices_with_status, fleet.devices_at_budget) == (
        14,
        3,
        1,
        1,
    )
    assert fleet.cloud_share == pytest.approx(3 / 14)
    assert fleet.latency_p95_ms_max == 80.0

    cutoffs = RetentionCutoffs(
        raw_telemetry=0, minute_aggregates=0, hour_aggregates=0, results=T0 + 60, events=0, drift=0,
        commands=0, dedup=0, sessions=0,
    )  # fmt: skip
    report = database.purge(cutoffs)
    assert report.deleted["result_fallback_reasons"] == 2
    assert database.fallback_stats("dev-a", since=T0 - 60, until=T0 + 60)[0].reasons == []


def test_a_device_without_fallback_has_no_status_and_no_share(database: Database) -> None:
    database.ingest([status("dev-c", T0, None)], result_bucket_s=60)
    assert database.fallback_stats("dev-c", since=T0 - 60, until=T0 + 60) == []
    database.ingest([results("dev-c", "1:0", T0, [("edge", None)])], result_bucket_s=60)
    [dev_c] = database.fallback_stats("dev-c", since=T0 - 60, until=T0 + 60)
    assert (dev_c.cloud_share, dev_c.status, dev_c.requests_budget_use, dev_c.latency_p95_ms) == (
        0.0,
        None,
        None,
        None,
    )
