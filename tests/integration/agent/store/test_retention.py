"""Retention on real files: age, soft cap (synced only), hard cap (unsynced, counted), real shrinking."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from edgefleet.agent.store import MetricSample, OutboxItem, Store
from edgefleet.agent.store.retention import _evict_unsynced_results

from .conftest import MakeRecords, OpenStore

pytestmark = pytest.mark.integration

KiB = 1024
# 64 raw outputs x 8 bytes: each result row is ~0.7 KiB, so a few thousand rows exceed the caps.
BIG = {"store_raw_outputs": True, "retention_interval_s": 3600.0, "max_age_s": None}


def _fill(store: Store, make_records: MakeRecords, rows: int, *, start: float, batch: int = 250) -> list[int]:
    ids: list[int] = []
    for offset in range(0, rows, batch):
        ids += store.write_results(make_records(batch, start=start + offset, outputs=64))
    return ids


def result_rows(item: OutboxItem) -> list[dict[str, Any]]:
    """A results outbox item's payload: the result rows it covers."""
    assert isinstance(item.payload, list), item.payload
    return item.payload


def _sync(store: Store, upto_id: int) -> None:
    """Acknowledge the results outbox items covering ids <= upto_id, as sync would."""
    items = [i for i in store.outbox_peek(100_000) if i.kind == "results"]
    store.outbox_ack([i.id for i in items if max(r["id"] for r in result_rows(i)) <= upto_id])


def _disk(store: Store) -> int:
    wal = store.path.with_name(store.path.name + "-wal")
    return os.path.getsize(store.path) + (os.path.getsize(wal) if wal.exists() else 0)


def test_soft_cap_evicts_synced_oldest_first_keeps_unsynced_and_shrinks_the_file(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store(max_bytes=1024 * KiB, hard_max_bytes=8192 * KiB, **BIG)
    ids = _fill(store, make_records, 3000, start=1000.0)
    _sync(store, ids[1999])  # 2000 synced, 1000 pending
    before = _disk(store)
    assert store.stats().page_count * 4096 > 1024 * KiB

    report = store.enforce_retention()

    assert report.deleted_for_size.get("results", 0) > 0
    assert report.evicted_unsynced == {}
    assert report.used_bytes_after <= 1024 * KiB
    assert _disk(store) < before  # the file on disk really shrank
    assert report.disk_bytes_after == _disk(store)
    remaining = [r["id"] for r in store.query_results(limit=10_000)]
    assert set(ids[2000:]) <= set(remaining)  # every unsynced result survived
    synced_left = sorted(set(remaining) - set(ids[2000:]))
    if synced_left:  # what survived of the synced ones is the newest
        assert synced_left == list(range(synced_left[0], 2001))
    assert store.outbox_backlog() == {"results": 1000}
    assert store.query_events(kind="store.evicted_unsynced") == []
    assert store.integrity_check() == ["ok"]


def test_hard_cap_evicts_unsynced_oldest_first_counts_and_raises_an_event(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store(max_bytes=512 * KiB, hard_max_bytes=768 * KiB, **BIG)
    ids = _fill(store, make_records, 3000, start=1000.0)  # none synced
    before = _disk(store)

    report = store.enforce_retention()

    evicted = report.evicted_unsynced["results"]
    assert evicted > 0
    assert _disk(store) < before
    assert report.used_bytes_after <= 768 * KiB
    remaining = sorted(r["id"] for r in store.query_results(limit=10_000))
    assert remaining == ids[evicted:]  # the oldest went, the newest stayed
    [event] = store.query_events(kind="store.evicted_unsynced")
    assert event["level"] == "error"
    assert event["data"]["count"] == evicted
    stats = store.stats()
    assert stats.evicted_unsynced_total == evicted
    assert stats.outbox_backlog["results"] == len(remaining)
    assert stats.outbox_backlog["events"] == 1  # the eviction event itself goes to the cloud
    # The outbox only references what is still there: the cut item was trimmed, no gaps.
    served = [r["id"] for i in store.outbox_peek(100_000) if i.kind == "results" for r in result_rows(i)]
    assert served == remaining
    assert store.integrity_check() == ["ok"]


def test_hard_cap_then_evicts_other_pending_items_by_priority(open_store: OpenStore) -> None:
    store = open_store(max_bytes=128 * KiB, hard_max_bytes=192 * KiB, **BIG)
    for i in range(150):
        store.enqueue("telemetry", {"blob": "t" * 2000, "i": i}, priority=1)
    for i in range(20):
        store.enqueue("status", {"blob": "s" * 2000, "i": i}, priority=0)
    report = store.enforce_retention()
    assert report.evicted_unsynced.get("telemetry", 0) > 0
    assert "status" not in report.evicted_unsynced  # lower-priority telemetry went first
    kept = [i.payload["i"] for i in store.outbox_peek(1000) if i.kind == "telemetry"]  # type: ignore[call-overload]
    assert kept == sorted(kept)
    assert kept[-1] == 149  # the newest telemetry is kept


def test_age_limit_deletes_only_synced_rows(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store(max_age_s=3600.0, retention_interval_s=3600.0)
    now = time.time()
    old = store.write_results(make_records(5, start=now - 7200))
    old += store.write_results(make_records(5, start=now - 7195))
    store.write_results(make_records(10, start=now - 60))
    store.write_metrics([MetricSample(now - 7200, "cpu", 1.0), MetricSample(now, "cpu", 2.0)])
    _sync(store, old[4])  # half of the old ones synced

    report = store.enforce_retention(now=now)

    assert report.deleted_by_age == {"results": 5, "metrics": 1}
    ids = {r["id"] for r in store.query_results(limit=100)}
    assert set(old[:5]).isdisjoint(ids)
    assert set(old[5:]) <= ids  # old but unsynced: kept
    assert len(ids) == 15


def test_age_limit_finds_old_synced_rows_wherever_the_clock_put_them(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    # results has no created_at index: the age cut looks in the batches whose created_at bounds
    # reach below it. A clock jump puts old rows after new ones, and one batch mixes both.
    store = open_store(max_age_s=3600.0, retention_interval_s=3600.0)
    now = time.time()
    new = store.write_results(make_records(256, start=now - 60))  # a full batch: its own bounds row
    old = store.write_results(make_records(256, start=now - 7200))  # written after the new ones
    mixed = store.write_results([*make_records(2, start=now - 9000), *make_records(2, start=now - 30)])
    pending_old = store.write_results(make_records(3, start=now - 8000))  # small: joins mixed's row
    _sync(store, mixed[-1])

    report = store.enforce_retention(now=now)

    assert report.deleted_by_age == {"results": len(old) + 2}
    ids = {r["id"] for r in store.query_results(limit=1000)}
    assert ids == {*new, *mixed[2:], *pending_old}  # old but unsynced: kept
    batches = store.db.execute("SELECT first_id, last_id FROM result_batches ORDER BY first_id").fetchall()
    # The emptied batch is forgotten; the half-emptied one keeps its (still covering) bounds.
    assert batches == [(new[0], new[-1]), (mixed[0], pending_old[-1])]
    newest_first = "SELECT id FROM results WHERE created_at >= ? ORDER BY created_at DESC, id DESC"
    expected = [row[0] for row in store.db.execute(newest_first, (now - 8500,))]
    assert [r["id"] for r in store.query_results(since=now - 8500, limit=1000)] == expected
    assert [r["id"] for r in store.query_results(limit=10)] == expected[:10]


def test_writes_run_retention_when_due(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store(max_bytes=256 * KiB, hard_max_bytes=384 * KiB, store_raw_outputs=True,
                       retention_interval_s=0.001)  # fmt: skip
    for start in range(0, 4000, 250):
        store.write_results(make_records(250, start=float(start), outputs=64))
    assert store.last_retention is not None
    assert store.stats().evicted_unsynced_total > 0
    assert store.stats().page_count * 4096 <= 384 * KiB + 256 * KiB  # bounded, never runaway


def test_retention_with_nothing_to_do_changes_nothing(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(10))
    report = store.enforce_retention()
    assert report.deleted_total == 0
    assert report.vacuumed_pages == 0
    assert store.outbox_backlog() == {"results": 10}


def test_a_full_disk_evicts_and_retries_the_write(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store(store_raw_outputs=True, retention_interval_s=3600.0, max_age_s=None)
    _fill(store, make_records, 2000, start=1000.0)
    store.checkpoint("TRUNCATE")
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    # SQLite reports SQLITE_FULL ("database or disk is full") at this page limit, as on a full disk.
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")
    ids = store.write_results(make_records(250, start=9000.0, outputs=64))
    assert len(ids) == 250  # written after the emergency eviction
    [event] = store.query_events(kind="store.evicted_unsynced")
    assert "found the disk full" in event["message"]
    assert event["data"]["count"] > 0
    assert store.stats().evicted_unsynced_total == event["data"]["count"]
    assert set(ids) <= {r["id"] for r in store.query_results(limit=10_000)}


def test_without_autocheckpoints_retention_checkpoints_so_the_wal_stays_bounded(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store(wal_autocheckpoint_pages=0, retention_interval_s=3600.0, store_raw_outputs=True)
    wal = store.path.with_name(store.path.name + "-wal")
    for _ in range(20):
        store.write_results(make_records(50, outputs=32))
    first = wal.stat().st_size
    store.enforce_retention()  # checkpoints: the next writes reuse the WAL from its start
    for _ in range(20):
        store.write_results(make_records(50, outputs=32))
    assert wal.stat().st_size < first * 2.1  # 2.6x without the checkpoint (the tree grew meanwhile)


def test_eviction_takes_the_oldest_unsynced_results_across_items_skipping_synced_ones(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    for k in range(3):  # ids 1-10, 11-20, 21-30: one outbox item each
        store.write_results(make_records(10, start=1000.0 + 10 * k))
    middle = [i for i in store.outbox_peek(10) if i.kind == "results"][1]
    store.outbox_ack([middle.id])  # 11-20 synced
    conn = store._conn
    conn.execute("BEGIN IMMEDIATE")
    assert _evict_unsynced_results(conn, 15) == 15  # 1-10 and 21-25
    conn.execute("COMMIT")
    assert sorted(r["id"] for r in store.query_results(limit=100)) == [*range(11, 21), *range(26, 31)]
    assert store.outbox_backlog() == {"results": 5}
    served = [r["id"] for i in store.outbox_peek(100) if i.kind == "results" for r in i.payload]  # type: ignore[index]
    assert served == list(range(26, 31))
    conn.execute("BEGIN IMMEDIATE")
    assert _evict_unsynced_results(conn, 100) == 5  # fewer unsynced than asked for: all of them
    assert _evict_unsynced_results(conn, 100) == 0
    conn.execute("COMMIT")
    assert store.outbox_backlog() == {}
