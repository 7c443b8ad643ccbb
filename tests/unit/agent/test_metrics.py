"""Pipeline counters and percentiles."""

from __future__ import annotations

import pytest

from edgefleet.agent.metrics import PipelineCounters, percentile

pytestmark = pytest.mark.unit


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_counters_snapshot() -> None:
    counters = PipelineCounters()
    counters.record_batch(4, 2.0)
    counters.record_batch(2, 4.0)
    counters.record_stored(6)
    counters.record_inference_error(3)
    snap = counters.snapshot()
    assert snap.windows_inferred == 6
    assert snap.batches == 2
    assert snap.results_stored == 6
    assert snap.windows_skipped == 3
    assert snap.batch_sizes == [4, 2]
    assert snap.latency_percentiles()["p50"] == 2.0
