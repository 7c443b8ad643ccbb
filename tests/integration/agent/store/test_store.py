"""Store on real SQLite files: writes, the outbox contract, queries, pragmas, bad input."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from edgefleet.agent.store import (
    PRIORITY_EVENTS,
    PRIORITY_RESULTS,
    PRIORITY_TELEMETRY,
    SCHEMA_VERSION,
    MetricSample,
    ResultRecord,
    Store,
    StoreConfig,
)
from edgefleet.errors import StoreError

if TYPE_CHECKING:
    from tests.integration.agent.store.conftest import MakeRecords, OpenStore

pytestmark = pytest.mark.integration


def test_write_results_is_one_transaction_with_one_outbox_item(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    ids = store.write_results(make_records(300))
    assert ids == list(range(1, 301))
    more = store.write_results(make_records(5))
    assert more == list(range(301, 306))
    outbox = store.db.execute("SELECT kind, first_result_id, last_result_id FROM outbox").fetchall()
    assert outbox == [("results", 1, 300), ("results", 301, 305)]
    assert store.outbox_backlog() == {"results": 305}


def test_pragmas_wal_incremental_vacuum_and_synchronous(open_store: OpenStore) -> None:
    for name, mode, level in (("a.db", "OFF", 0), ("b.db", "NORMAL", 1), ("c.db", "FULL", 2)):
        store = open_store(name, synchronous=mode, wal_autocheckpoint_pages=123)
        conn = store.db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 123
        assert store.schema_version == SCHEMA_VERSION


def test_outbox_orders_by_priority_then_id_and_resolves_results(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store(store_raw_outputs=True)
    store.write_results(make_records(3))
    telemetry = store.write_metrics([MetricSample(1.0, "infer.latency_ms", 3.5, {"stream": "imu"})])
    event_id = store.add_event("model.changed", "motion 1.2.0 active", data={"version": "1.2.0"})
    drift = store.enqueue("drift", {"psi": 0.3}, priority=PRIORITY_TELEMETRY)
    status = store.enqueue("status", {"state": "running"}, priority=PRIORITY_EVENTS)

    items = store.outbox_peek(10)
    assert [(i.kind, i.priority) for i in items] == [
        ("events", PRIORITY_EVENTS),
        ("status", PRIORITY_EVENTS),
        ("telemetry", PRIORITY_TELEMETRY),
        ("drift", PRIORITY_TELEMETRY),
        ("results", PRIORITY_RESULTS),
    ]
    assert [i.id for i in items[2:4]] == [telemetry, drift]
    assert items[1].id == status
    assert items[0].payload == {
        "id": event_id,
        "ts": items[0].payload["ts"],  # type: ignore[call-overload]
        "kind": "model.changed",
        "level": "info",
        "message": "motion 1.2.0 active",
        "data": {"version": "1.2.0"},
    }
    assert items[2].payload == {
        "samples": [{"ts": 1.0, "name": "infer.latency_ms", "value": 3.5, "labels": {"stream": "imu"}}]
    }
    rows = items[4].payload
    assert isinstance(rows, list)
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[1]["outputs"] == [0.0, 0.5, 1.0, 1.5]  # exact float64 round trip
    assert rows[1]["answered_by"] == "edge"
    assert all(i.approx_bytes > 0 for i in items)
    assert store.outbox_backlog() == {"events": 1, "status": 1, "telemetry": 1, "drift": 1, "results": 3}


def test_peek_max_bytes_caps_the_batch_but_never_returns_nothing(open_store: OpenStore) -> None:
    store = open_store()
    for i in range(5):
        store.enqueue("status", {"blob": "x" * 1000, "i": i}, priority=0)
    assert len(store.outbox_peek(10, max_bytes=2500)) == 2
    assert len(store.outbox_peek(10, max_bytes=10)) == 1
    assert len(store.outbox_peek(3)) == 3


def test_ack_removes_items_marks_results_synced_and_ids_are_never_reused(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(10))
    store.enqueue("status", {"n": 1}, priority=0)
    items = store.outbox_peek(10)
    assert store.outbox_ack([i.id for i in items]) == 2
    assert store.outbox_ack([i.id for i in items]) == 0  # a redelivered ack is harmless
    assert store.outbox_backlog() == {}
    assert all(r["synced_at"] is not None for r in store.query_results(limit=100))
    last_id = max(i.id for i in items)
    store.close()
    reopened = open_store()
    new_id = reopened.enqueue("status", {"n": 2}, priority=0)
    assert new_id > last_id  # AUTOINCREMENT: sync de-dups on these ids


def test_query_results_newest_first_with_filters(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store()
    store.write_results(make_records(5, stream="imu", start=1000.0))
    store.write_results(make_records(5, stream="gps", start=2000.0))
    newest = store.query_results(limit=3)
    assert [(r["stream"], r["window_seq"]) for r in newest] == [("gps", 4), ("gps", 3), ("gps", 2)]
    imu = store.query_results(stream="imu")
    assert [r["window_seq"] for r in imu] == [4, 3, 2, 1, 0]
    assert [r["window_seq"] for r in store.query_results(since=1004.0, stream="imu")] == [4, 3]
    assert store.query_results(stream="nope") == []


def test_raw_outputs_dropped_unless_configured(open_store: OpenStore, make_records: MakeRecords) -> None:
    lean = open_store("lean.db")
    lean.write_results(make_records(2))
    assert [r["outputs"] for r in lean.query_results()] == [None, None]
    raw = open_store("raw.db", store_raw_outputs=True)
    raw.write_results(make_records(2, outputs=3))
    assert raw.query_results()[0]["outputs"] == [0.0, 0.5, 1.0]


def test_numpy_scalars_are_stored_as_plain_numbers(open_store: OpenStore) -> None:
    store = open_store()
    # Deliberately numpy scalars where the annotation says float/int: what a caller's arrays yield.
    record = ResultRecord(
        "imu", np.float64(1.0), np.float32(2.0), "m", "1", "a", np.float32(0.25), None,  # type: ignore[arg-type]
        np.float32(1.5), window_seq=np.int64(7),  # type: ignore[arg-type]
    )  # fmt: skip
    store.write_results([record])
    row = store.query_results()[0]
    assert (row["window_end"], row["score"], row["latency_ms"], row["window_seq"]) == (2.0, 0.25, 1.5, 7)


def test_bad_records_are_rejected_with_an_event_and_the_rest_kept(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    good = make_records(2)
    bad_time = make_records(1)[0]
    bad_time.window_start = float("nan")
    bad_side = make_records(1)[0]
    bad_side.answered_by = "satellite"  # type: ignore[assignment]
    bad_stream = make_records(1)[0]
    bad_stream.stream = None  # type: ignore[assignment]
    bad_type = make_records(1)[0]
    bad_type.latency_ms = "fast"  # type: ignore[assignment]
    ints_are_fine = make_records(1)[0]
    ints_are_fine.window_start, ints_are_fine.created_at = 5, 6
    ids = store.write_results([good[0], bad_time, bad_side, bad_stream, good[1], bad_type, ints_are_fine])
    assert ids == [1, 2, 3]
    assert store.outbox_backlog()["results"] == 3
    assert [r["window_start"] for r in store.query_results() if r["id"] == 3] == [5.0]
    [event] = store.query_events(kind="store.rejected_results")
    assert event["level"] == "error"
    assert event["data"]["count"] == 4
    problems = " ".join(event["data"]["problems"])
    assert "record 1: window_start must be a finite number" in problems
    assert "record 2: answered_by must be 'edge' or 'cloud'" in problems
    assert "record 3: stream must be a non-empty string" in problems
    assert "record 5: latency_ms must be a finite number, got 'fast'" in problems


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda s: s.add_event("x", "m", level="loud"), "event level 'loud'"),
        (lambda s: s.add_event("", "m"), "non-empty kind"),
        (lambda s: s.add_event("x", "m", data={"f": object()}), "not JSON-serialisable"),
        (lambda s: s.enqueue("results", {}, priority=0), "reserved"),
        (lambda s: s.enqueue("status", {}, priority=-1), "priority must be an integer >= 0"),
        (lambda s: s.enqueue("status", [1], priority=0), "payload must be a dict"),
        (lambda s: s.enqueue("status", {"b": b"bytes"}, priority=0), "not JSON-serialisable"),
        (lambda s: s.write_metrics([]), "no samples"),
        (lambda s: s.write_metrics([MetricSample(1.0, "x", "high")]), "metric sample 0"),  # type: ignore[arg-type]
        (lambda s: s.write_metrics([MetricSample(1.0, "", 1.0)]), "non-empty string"),
        (lambda s: s.checkpoint("SOMETIMES"), "unknown checkpoint mode"),
    ],
)
def test_bad_input_raises_store_error_and_writes_nothing(
    open_store: OpenStore, call: Callable[[Store], object], expected: str
) -> None:
    store = open_store()
    with pytest.raises(StoreError, match=expected) as caught:
        call(store)
    assert caught.value.hint
    assert store.outbox_backlog() == {}


def test_closed_store_refuses_writes(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store()
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.write_results(make_records(1))


def test_not_a_database_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StoreError, match="cannot open the store") as caught:
        Store.open(path, StoreConfig(path=path))
    assert "restore" in (caught.value.hint or "")
    assert path.read_bytes().startswith(b"this is not sqlite")  # left untouched


def test_unwritable_directory_is_refused_with_a_hint(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the store") as caught:
        Store.open(blocker / "sub" / "store.db")
    assert "writable" in (caught.value.hint or "")


def test_stats_report_sizes_rows_backlog_and_bytes_written(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(50))
    store.add_event("source.drop", "dropped 3 samples", level="warning")
    stats = store.stats()
    assert stats.rows == {"results": 50, "metrics": 0, "events": 1, "outbox": 2}
    assert stats.unsynced_results == 50
    assert stats.outbox_backlog == {"events": 1, "results": 50}
    assert stats.size_bytes >= stats.page_count * stats.page_size
    assert stats.schema_version == SCHEMA_VERSION
    if stats.bytes_written_source != "unavailable":
        assert stats.bytes_written_total > 0
        assert stats.bytes_written_per_hour > 0


def test_threads_share_one_store(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store()
    errors: list[BaseException] = []
    writers_done = threading.Event()

    def writer() -> None:
        try:
            for _ in range(20):
                store.write_results(make_records(10))
        except BaseException as exc:
            errors.append(exc)

    def drainer() -> None:
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                store.outbox_ack([i.id for i in store.outbox_peek(5)])
                if writers_done.is_set() and not store.outbox_backlog():
                    return
        except BaseException as exc:
            errors.append(exc)

    drain = threading.Thread(target=drainer)
    drain.start()
    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writers_done.set()
    drain.join()
    assert not errors
    ids = [r[0] for r in store.db.execute("SELECT id FROM results ORDER BY id").fetchall()]
    assert ids == list(range(1, 801))
    assert store.outbox_backlog() == {}
    assert store.db.execute("SELECT count(*) FROM results WHERE synced_at IS NULL").fetchone()[0] == 0


def test_two_stores_on_one_file_see_each_other(open_store: OpenStore, make_records: MakeRecords) -> None:
    writer = open_store()
    reader = open_store()
    writer.write_results(make_records(3))
    assert reader.outbox_backlog() == {"results": 3}
    reader.outbox_ack([i.id for i in reader.outbox_peek(10)])
    assert writer.outbox_backlog() == {}


def test_checkpoint_and_integrity(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store(wal_autocheckpoint_pages=0)
    store.write_results(make_records(100))
    busy, frames, done = store.checkpoint("TRUNCATE")
    assert busy == 0
    assert frames == done
    assert store.stats().wal_bytes == 0
    assert store.integrity_check() == ["ok"]
    assert sqlite3.connect(store.path).execute("SELECT count(*) FROM results").fetchone()[0] == 100


def test_query_results_is_newest_first_by_created_at_also_after_the_clock_went_back(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    # A Pi without an RTC: results written after NTP moved the clock are older than earlier ones.
    store = open_store()
    store.write_results(make_records(4, stream="imu", start=2000.0))  # ids 1-4, created 2001-2004
    store.write_results(make_records(4, stream="gps", start=1000.0))  # ids 5-8, created 1001-1004
    store.write_results(make_records(2, stream="imu", start=3000.0))  # ids 9-10, created 3001-3002
    store.write_results(make_records(2, stream="imu", start=2001.5))  # ids 11-12, created 2002.5, 2003.5

    def created(**query: Any) -> list[float]:
        return [r["created_at"] for r in store.query_results(**query)]

    every = created(limit=100)
    assert len(every) == 12
    assert every == sorted(every, reverse=True)
    assert created(limit=5) == [3002.0, 3001.0, 2004.0, 2003.5, 2003.0]
    assert created(since=2003.0) == [3002.0, 3001.0, 2004.0, 2003.5, 2003.0]
    assert created(stream="gps", limit=2) == [1004.0, 1003.0]
    assert created(since=1003.5, stream="gps") == [1004.0]
    assert store.query_results(limit=0) == []
    # Equal created_at: the later id first, as before.
    store.write_results(make_records(1, stream="imu", start=3001.0))  # id 13, created 3002.0
    assert [r["id"] for r in store.query_results(limit=2)] == [13, 10]


def test_small_writes_share_a_bounds_row_of_at_most_256_ids(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    # A quiet agent commits a few results at a time: one result_batches row per write would make
    # the table as long as results. Small writes widen the newest row instead, up to 256 ids.
    store = open_store()
    for i in range(300):
        store.write_results(make_records(1, start=5000.0 - i))  # and the clock running backwards
    store.write_results(make_records(256, start=9000.0))  # a full batch gets its own row
    rows = store.db.execute("SELECT * FROM result_batches ORDER BY first_id").fetchall()
    assert rows == [
        (1, 256, 5000.0 - 254, 5001.0),
        (257, 300, 5000.0 - 298, 5000.0 - 255),
        (301, 556, 9001.0, 9256.0),
    ]
    assert [r["id"] for r in store.query_results(since=4744.0, limit=5)] == [556, 555, 554, 553, 552]
    # created_at of the i-th small write: 5001 - i; since 4745 keeps writes 0-256 (ids 1-257).
    expected = [*range(556, 300, -1), *range(1, 258)]
    assert [r["id"] for r in store.query_results(since=4745.0, limit=1000)] == expected
