"""The result writer against a real SQLite store: group commit, shutdown flush, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.store import ResultRecord, Store, StoreConfig
from edgefleet.agent.writer import ResultWriter, WriterSettings

pytestmark = pytest.mark.integration


def _records(n: int, start: int = 0) -> list[ResultRecord]:
    return [
        ResultRecord("imu", float(i), i + 1.0, "m", "1.0.0", "a", 0.5, None, 1.0, window_seq=i)
        for i in range(start, start + n)
    ]


def test_everything_handed_over_is_committed_by_stop(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    counters = PipelineCounters()
    writer = ResultWriter(store, counters, WriterSettings(batch_size=100, interval_s=5.0))
    writer.start()
    try:
        writer.put(_records(1))
        assert writer.first_commit.wait(30)  # the first result is not held back for interval_s
        for i in range(10):
            writer.put(_records(37, start=1 + 37 * i))
        assert writer.stop(30)
        assert len(store.query_results(limit=1000)) == 371
        snap = counters.snapshot()
        assert snap.results_stored == 371
        # Grouped: far fewer transactions than hand-overs plus the first one.
        assert snap.store_transactions <= 6
        assert writer.lost == 0
    finally:
        store.close()


def test_a_store_that_fails_is_counted_and_what_is_left_at_stop_is_reported(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    store.close()  # every write now raises StoreError
    counters = PipelineCounters()
    writer = ResultWriter(store, counters, WriterSettings(interval_s=0.01))
    writer.start()
    writer.put(_records(5))
    assert writer.stop(30)
    assert writer.lost == 5
    assert counters.snapshot().store_errors >= 1
    assert not writer.first_commit.is_set()
