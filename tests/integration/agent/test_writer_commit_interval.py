"""The result writer drives the store's commit policy: one commit per interval, held
acknowledgements riding on it, everything committed by stop()."""

from __future__ import annotations

import sqlite3
import time
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


def test_results_and_acks_wait_for_the_interval_and_stop_commits_them(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    counters = PipelineCounters()
    writer = ResultWriter(store, counters, WriterSettings(batch_size=256, interval_s=3600.0))
    writer.start()
    try:
        writer.put(_records(1))
        assert writer.first_commit.wait(30)  # the first result is not held back
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
    finally:
        store.close()


def test_a_full_batch_does_not_wait_for_the_interval(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    writer = ResultWriter(store, PipelineCounters(), WriterSettings(batch_size=50, interval_s=3600.0))
    writer.start()
    try:
        writer.put(_records(1))
        assert writer.first_commit.wait(30)
        writer.put(_records(120, start=1))
        deadline = time.monotonic() + 60
        while _committed(store.path, "results") < 101 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _committed(store.path, "results") == 101  # two full batches; 20 wait for the interval
        assert writer.stop(30)
        assert _committed(store.path, "results") == 121
    finally:
        store.close()


def test_deferred_batches_wake_the_writer_once_a_full_transaction_is_queued(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    writer = ResultWriter(store, PipelineCounters(), WriterSettings(batch_size=50, interval_s=3600.0))
    writer.start()
    try:
        writer.put(_records(1))
        assert writer.first_commit.wait(30)
        rows = result_rows(_records(30, start=1), raw_outputs=False)
        more = result_rows(_records(30, start=31), raw_outputs=False)
        failures: list[Exception] = []
        writer.put_deferred(lambda: rows, failures.append, len(rows))
        writer.put_deferred(lambda: more, failures.append, len(more))
        deadline = time.monotonic() + 60
        while _committed(store.path, "results") < 51 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _committed(store.path, "results") == 51  # one full batch; 10 wait for the interval
        assert writer.stop(30)
        assert _committed(store.path, "results") == 61
        assert failures == []
    finally:
        store.close()


def test_the_writer_comes_round_its_loop_while_results_wait_for_a_long_interval(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", StoreConfig(path=tmp_path / "s.db"))
    writer = ResultWriter(store, PipelineCounters(), WriterSettings(batch_size=256, interval_s=3600.0))
    writer.start()
    try:
        writer.put(_records(1))
        assert writer.first_commit.wait(30)
        writer.put(_records(3, start=1))  # pending for an hour
        beat = writer.heartbeat
        deadline = time.monotonic() + 60
        while writer.heartbeat == beat and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.heartbeat != beat  # stall detection keeps seeing the thread
        assert writer.stop(30)
        assert _committed(store.path, "results") == 4
    finally:
        store.close()
