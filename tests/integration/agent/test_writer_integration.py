"""The result writer against a real SQLite store: group commit, shutdown flush, failures."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.store import ResultRecord, Store, StoreConfig
from edgefleet.agent.store.rows import result_rows
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


def test_rows_and_records_are_both_committed_in_full_transactions(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    counters = PipelineCounters()
    writer = ResultWriter(store, counters, WriterSettings(batch_size=64, interval_s=5.0))
    writer.start()
    try:
        for i in range(8):
            writer.put_rows(result_rows(_records(32, start=32 * i), raw_outputs=False))
        writer.put(_records(5, start=1000))  # e.g. cloud answers handed back
        writer.put_rows([])  # nothing to do, never queued
        assert writer.stop(30)
        stored = store.query_results(limit=1000)
        assert sorted(r["window_seq"] for r in stored) == [*range(256), *range(1000, 1005)]
        assert counters.snapshot().results_stored == 261
        assert writer.lost == 0
        ranges = store._conn.execute(
            "SELECT last_result_id - first_result_id + 1 FROM outbox WHERE kind = 'results'"
        ).fetchall()
        assert sum(n for (n,) in ranges) == 261
        assert all(n <= 64 for (n,) in ranges)  # no transaction beyond batch_size
    finally:
        store.close()


def test_rows_left_when_the_store_fails_at_stop_are_counted_lost(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    store.close()
    counters = PipelineCounters()
    writer = ResultWriter(store, counters, WriterSettings(interval_s=0.01))
    writer.start()
    writer.put(_records(2))
    writer.put_rows(result_rows(_records(7), raw_outputs=False))
    assert writer.stop(30)
    assert writer.lost == 9
    assert not writer.first_commit.is_set()


def test_the_backlog_kept_while_the_store_fails_is_bounded(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    store.close()
    writer = ResultWriter(
        store, PipelineCounters(), WriterSettings(batch_size=10, interval_s=0.01, max_pending=20)
    )
    writer.start()
    for i in range(5):
        writer.put_rows(result_rows(_records(10, start=10 * i), raw_outputs=False))
    deadline = time.monotonic() + 30
    while writer.lost < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.lost == 30  # 50 handed over, 20 kept for when the store comes back
    assert writer.stop(30)
    assert writer.lost == 50


def test_deferred_rows_are_built_in_the_writer_and_a_failing_batch_is_reported_and_skipped(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    counters = PipelineCounters()
    writer = ResultWriter(store, counters, WriterSettings(batch_size=100, interval_s=0.01))
    failures: list[Exception] = []
    built_in: list[str] = []

    def good(start: int) -> list[tuple[Any, ...]]:
        built_in.append(threading.current_thread().name)
        return result_rows(_records(10, start=start), raw_outputs=False)

    def bad() -> list[tuple[Any, ...]]:
        raise ValueError("3 output values per window but 4 labels")

    writer.start()
    try:
        writer.put_deferred(lambda: good(0), failures.append)
        writer.put_deferred(bad, failures.append)
        writer.put_deferred(lambda: good(10), failures.append)
        assert writer.stop(30)
        seqs = sorted(r["window_seq"] for r in store.query_results(limit=100))
        assert seqs == list(range(20))  # the bad batch alone is skipped, nothing else lost
        assert [str(e) for e in failures] == ["3 output values per window but 4 labels"]
        assert built_in == ["agent-writer", "agent-writer"]
        assert writer.lost == 0
    finally:
        store.close()
