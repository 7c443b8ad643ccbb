"""The result writer drives the store's commit policy: one commit per interval, held
acknowledgements riding on it, everything committed by stop()."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def _committed(path: Path, table: str) -> int:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


@contextmanager
def _writer_past_its_first_commit(
    tmp_path: Path, batch_size: int, counters: PipelineCounters | None = None
) -> Iterator[tuple[Store, ResultWriter]]:
    """A started writer on a fresh store, an hour's commit interval, its first result committed
    (the first is never held back); the store is closed after the test."""
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    counters = PipelineCounters() if counters is None else counters
    writer = ResultWriter(store, counters, WriterSettings(batch_size=batch_size, interval_s=3600.0))
    writer.start()
    try:
        writer.put(_records(1))
        assert writer.first_commit.wait(30)
        yield store, writer
    finally:
        store.close()


def _wait_for_results(store: Store, n: int) -> int:
    """The results committed once ``n`` are, or after 60 s."""
    deadline = time.monotonic() + 60
    while _committed(store.path, "results") < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return _committed(store.path, "results")


def test_results_and_acks_wait_for_the_interval_and_stop_commits_them(tmp_path: Path) -> None:
    counters = PipelineCounters()
    with _writer_past_its_first_commit(tmp_path, 256, counters) as (store, writer):
        for i in range(5):
            writer.put(_records(3, start=1 + 3 * i))
        assert store.outbox_ack([item.id for item in store.outbox_peek(10)]) == 1
        # Handed over, but an hour from due: nothing of it is committed yet.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert _committed(store.path, "results") == 1
            time.sleep(0.1)
        assert _committed(store.path, "outbox") == 1  # the ack is held too
        assert writer.stop(30)
        assert _committed(store.path, "results") == 16
        assert _committed(store.path, "outbox") == 1  # the first item acked, the second pending
        assert counters.snapshot().store_transactions == 2
        # Stopped: the store writes straight through again.
        store.outbox_ack([item.id for item in store.outbox_peek(10)])
        assert _committed(store.path, "outbox") == 0


def test_a_full_batch_does_not_wait_for_the_interval(tmp_path: Path) -> None:
    with _writer_past_its_first_commit(tmp_path, 50) as (store, writer):
        writer.put(_records(120, start=1))
        assert _wait_for_results(store, 101) == 101  # two full batches; 20 wait for the interval
        assert writer.stop(30)
        assert _committed(store.path, "results") == 121


def test_deferred_batches_wake_the_writer_once_a_full_transaction_is_queued(tmp_path: Path) -> None:
    with _writer_past_its_first_commit(tmp_path, 50) as (store, writer):
        rows = result_rows(_records(30, start=1), raw_outputs=False)
        more = result_rows(_records(30, start=31), raw_outputs=False)
        failures: list[Exception] = []
        writer.put_deferred(lambda: rows, failures.append, len(rows))
        writer.put_deferred(lambda: more, failures.append, len(more))
        assert _wait_for_results(store, 51) == 51  # one full batch; 10 wait for the interval
        assert writer.stop(30)
        assert _committed(store.path, "results") == 61
        assert failures == []


def test_the_writer_comes_round_its_loop_while_results_wait_for_a_long_interval(tmp_path: Path) -> None:
    with _writer_past_its_first_commit(tmp_path, 256) as (store, writer):
        writer.put(_records(3, start=1))  # pending for an hour
        beat = writer.heartbeat
        deadline = time.monotonic() + 60
        while writer.heartbeat == beat and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.heartbeat != beat  # stall detection keeps seeing the thread
        assert writer.stop(30)
        assert _committed(store.path, "results") == 4


def test_at_a_steady_load_the_writer_wakes_once_per_transaction(tmp_path: Path) -> None:
    """A batch every 50 ms and a transaction every 250 ms: the writer sleeps until each commit is
    due rather than waking at the first batch after a commit and again when the commit is due."""
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    writer = ResultWriter(store, PipelineCounters(), WriterSettings(batch_size=256, interval_s=0.25))
    writer.start()
    try:
        writer.put(_records(1))
        assert writer.first_commit.wait(30)
        failures: list[Exception] = []
        before = writer.wakeups
        for i in range(50):
            rows = result_rows(_records(1, start=1 + i), raw_outputs=False)
            writer.put_deferred(functools.partial(list, rows), failures.append, 1)
            time.sleep(0.05)
        woken = writer.wakeups - before
        assert writer.stop(30)
        assert _committed(store.path, "results") == 51
        assert failures == []
        # 2.5 s of batches are about ten transactions; waking at each first batch too made it twenty
        assert 3 <= woken <= 14, woken
    finally:
        store.close()
