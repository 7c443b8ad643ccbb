"""Held writes (``Store.hold_writes``): acknowledgements and metrics ride on the next commit."""

from __future__ import annotations

import sqlite3
import struct
import time
from pathlib import Path

import pytest

from edgefleet.agent.store import MetricSample, Store
from edgefleet.agent.store.rows import result_rows
from tests.integration.agent.store.conftest import MakeRecords, OpenStore

pytestmark = pytest.mark.integration


def _raw_count(path: Path, table: str) -> int:
    """What another connection sees: only committed rows."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def _samples(n: int = 3) -> list[MetricSample]:
    return [MetricSample(time.time(), f"m{i}", float(i)) for i in range(n)]


def test_held_acks_vanish_from_peek_and_backlog_at_once_and_commit_with_the_next_write(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(5))
    store.hold_writes(3600.0)
    items = store.outbox_peek(10)
    assert store.outbox_ack([item.id for item in items]) == len(items) == 1
    assert store.outbox_peek(10) == []
    assert store.outbox_backlog() == {}
    # Not committed yet: another connection still sees the item and no synced results.
    assert _raw_count(store.path, "outbox") == 1
    assert store.query_results(limit=10)[0]["synced_at"] is None
    store.write_results(make_records(2, start=time.time()))
    assert _raw_count(store.path, "outbox") == 1  # only the new batch's item is left
    synced = [r for r in store.query_results(limit=10) if r["synced_at"] is not None]
    assert len(synced) == 5
    assert store.outbox_backlog() == {"results": 2}


def test_an_ack_repeated_while_held_counts_once(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store()
    store.write_results(make_records(3))
    store.hold_writes(3600.0)
    item_id = store.outbox_peek(1)[0].id
    assert store.outbox_ack([item_id]) == 1
    assert store.outbox_ack([item_id, 999_999]) == 0


def test_held_metrics_are_committed_by_the_next_write_flush_or_close(
    open_store: OpenStore, make_records: MakeRecords, tmp_path: Path
) -> None:
    store = open_store()
    store.hold_writes(3600.0)
    store.queue_metrics(_samples())
    assert _raw_count(store.path, "metrics") == 0
    assert not store.flush_held(only_if_due=True)  # not due for an hour
    store.write_results(make_records(1))
    assert _raw_count(store.path, "metrics") == 3
    assert store.outbox_backlog().get("telemetry") == 1

    store.queue_metrics(_samples(2))
    assert store.flush_held()
    assert _raw_count(store.path, "metrics") == 5

    store.queue_metrics(_samples(4))
    store.outbox_ack([item.id for item in store.outbox_peek(10)])
    store.close()
    reopened = Store.open(tmp_path / "store.db")
    try:
        assert _raw_count(reopened.path, "metrics") == 9
        # Everything acknowledged before close is gone; only the last telemetry item is pending.
        assert reopened.outbox_backlog() == {"telemetry": 1}
    finally:
        reopened.close()


def test_turning_holding_off_commits_what_is_held(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store()
    store.write_results(make_records(4))
    store.hold_writes(3600.0)
    store.outbox_ack([item.id for item in store.outbox_peek(10)])
    store.queue_metrics(_samples())
    store.hold_writes(None)
    assert _raw_count(store.path, "outbox") == 1  # the telemetry item, now committed
    assert _raw_count(store.path, "metrics") == 3
    # And from now on writes go straight through.
    store.outbox_ack([item.id for item in store.outbox_peek(10)])
    assert _raw_count(store.path, "outbox") == 0


def test_held_writes_survive_a_refused_batch(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store()
    store.write_results(make_records(2))
    store.hold_writes(3600.0)
    store.outbox_ack([item.id for item in store.outbox_peek(10)])
    store.queue_metrics(_samples())
    rows = result_rows(make_records(3, start=time.time()), raw_outputs=False)
    bad = list(rows[1])
    bad[6] = "high"  # score must be a number: the schema refuses the batch, then the good rows go in
    ids = store.write_result_rows([rows[0], tuple(bad), rows[2]])
    assert len(ids) == 2
    assert _raw_count(store.path, "metrics") == 3
    assert sum(1 for r in store.query_results(limit=10) if r["synced_at"] is not None) == 2


def _wal_frames(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    data = wal.read_bytes() if wal.exists() else b""
    page_size = struct.unpack(">I", data[8:12])[0] if len(data) >= 32 else 4096
    return max(0, (len(data) - 32) // (24 + page_size))


def test_holding_writes_fewer_wal_pages_for_the_same_work(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    """The point of the policy: an acknowledgement and a metrics write per result batch cost
    pages of their own; held, they share the batch's transaction and mostly its pages."""
    frames = {}
    for holding in (False, True):
        store = open_store(f"{holding}.db", retention_interval_s=1e9, wal_autocheckpoint_pages=0)
        store.write_results(make_records(5))
        store.checkpoint("TRUNCATE")
        store.hold_writes(3600.0 if holding else None)
        for round_ in range(10):
            store.outbox_ack([item.id for item in store.outbox_peek(10)])
            store.queue_metrics(_samples())
            store.write_results(make_records(5, start=time.time() + round_ * 5))
        frames[holding] = _wal_frames(store.path)
    assert frames[True] < frames[False] * 0.75, frames
