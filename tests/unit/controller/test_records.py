from __future__ import annotations

import pytest

from edgefleet.controller.records import (
    LATENCY_BIN_EDGES_MS,
    IngestMessage,
    StoredResult,
    aggregate_results,
    latency_bin,
    percentile_from_bins,
)

pytestmark = pytest.mark.unit


def test_latency_bins_are_upper_edge_inclusive() -> None:
    assert latency_bin(0.0) == 0
    assert latency_bin(0.5) == 0
    assert latency_bin(0.51) == 1
    assert latency_bin(10.0) == LATENCY_BIN_EDGES_MS.index(10)
    assert latency_bin(1e9) == len(LATENCY_BIN_EDGES_MS)


def test_percentile_interpolates_inside_the_bin() -> None:
    assert percentile_from_bins([], 0.95) is None
    ten = LATENCY_BIN_EDGES_MS.index(10)
    # 100 results all in (7.5, 10]: the 95th percentile lies 95% of the way through that bin.
    assert percentile_from_bins([(ten, 100)], 0.95) == pytest.approx(7.5 + 2.5 * 0.95)
    # Bins given twice are merged; the open last bin reports its lower edge.
    last = len(LATENCY_BIN_EDGES_MS)
    assert percentile_from_bins([(last, 1), (last, 1)], 0.5) == LATENCY_BIN_EDGES_MS[-1]
    assert percentile_from_bins([(0, 95), (last, 5)], 0.99) == LATENCY_BIN_EDGES_MS[-1]


def test_aggregate_results_folds_per_bucket_label_and_version() -> None:
    message = IngestMessage(
        device_id="d",
        message_id="1:0",
        kind="results",
        received_at=0,
        results=[
            StoredResult(0.0, "a", 5.0, "edge", "1"),
            StoredResult(59.9, "a", 15.0, "cloud", "1"),
            StoredResult(60.0, "a", None, "edge", "1"),
            StoredResult(10.0, "b", float("nan"), "edge", "2"),
        ],
    )
    buckets, bins = aggregate_results([message], 60)
    by_key = {(b.bucket_start, b.label, b.model_version): b for b in buckets}
    first = by_key[(0.0, "a", "1")]
    assert (
        first.count,
        first.cloud_count,
        first.latency_sum_ms,
        first.latency_count,
        first.latency_max_ms,
    ) == (
        2,
        1,
        20.0,
        2,
        15.0,
    )
    assert by_key[(60.0, "a", "1")].latency_count == 0
    assert by_key[(0.0, "b", "2")].latency_count == 0  # NaN latencies are not counted
    assert sum(b.count for b in bins) == 2


def test_no_record_shares_a_name_with_a_wire_model() -> None:
    # One name per concept: the wire's ResultItem/EventItem and the stored rows are different things.
    from edgefleet.cloud_sync import protocol
    from edgefleet.controller import records

    assert set(records.__all__) & set(protocol.__all__) == set()
