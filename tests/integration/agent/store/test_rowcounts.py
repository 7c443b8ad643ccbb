"""Store.stats() row counts without count(*): exact after inserts, every kind of retention delete,
rolled-back transactions and reopening, compared with count(*) on real files."""

from __future__ import annotations

import itertools
import re
import sqlite3
import time
from contextlib import suppress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgefleet.agent.store import MetricSample, ResultRecord, Store, StoreConfig
from edgefleet.agent.store.backup import check_database
from edgefleet.agent.store.rowcounts import delete_rows
from edgefleet.cli.main import main

from .conftest import MakeRecords, OpenStore

pytestmark = pytest.mark.integration

KiB = 1024
TABLES = ("results", "metrics", "events", "outbox")


def counted(store: Store) -> dict[str, int]:
    return store.stats().rows


def actual(store: Store) -> dict[str, int]:
    return {t: int(store.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}


def sync_all(store: Store) -> None:
    store.outbox_ack([i.id for i in store.outbox_peek(100_000)])


def metrics(n: int, ts: float) -> list[MetricSample]:
    return [MetricSample(ts + i, f"m{i % 5}", float(i)) for i in range(n)]


def test_stats_reads_no_history_table(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store()
    store.write_results(make_records(300))
    store.write_metrics(metrics(10, time.time()))
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        assert counted(store) == {"results": 300, "metrics": 10, "events": 0, "outbox": 2}
    finally:
        store._conn.set_trace_callback(None)
    scans = [s for s in statements if re.search(r"\bFROM\s+\[?(results|metrics|events)\b", s, re.I)]
    assert scans == []
    assert any("sqlite_sequence" in s for s in statements)


def test_counts_follow_deletes_by_age(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store(max_age_s=3600.0, retention_interval_s=3600.0)
    now = time.time()
    store.write_results(make_records(40, start=now - 7200))
    store.write_metrics(metrics(30, now - 7200))
    store.add_event("test.old", "old")
    sync_all(store)
    store.write_results(make_records(25, start=now - 7100))  # old but unsynced: kept
    store.write_results(make_records(10, start=now - 60))
    store.write_metrics(metrics(7, now + 1000))
    assert counted(store) == actual(store)

    report = store.enforce_retention(now=now + 3700.0)  # the event, written just now, ages out too

    assert report.deleted_by_age == {"results": 40, "metrics": 30, "events": 1}
    assert counted(store) == actual(store) == {"results": 35, "metrics": 7, "events": 0, "outbox": 3}


def test_counts_follow_deletes_for_size(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store(
        max_bytes=256 * KiB,
        hard_max_bytes=8192 * KiB,
        store_raw_outputs=True,
        retention_interval_s=3600.0,
        max_age_s=None,
    )
    for offset in range(0, 1500, 250):
        store.write_results(make_records(250, start=1000.0 + offset, outputs=64))
    store.write_metrics(metrics(50, 500.0))  # older than every result: trimmed first
    sync_all(store)
    store.write_results(make_records(100, outputs=64))

    report = store.enforce_retention()

    assert report.deleted_for_size.get("results", 0) > 0
    assert report.deleted_for_size.get("metrics") == 50
    assert report.evicted_unsynced == {}
    assert counted(store) == actual(store)
    assert counted(store)["results"] >= 100


def test_counts_follow_eviction_of_unsynced_results(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store(
        max_bytes=256 * KiB, hard_max_bytes=384 * KiB, store_raw_outputs=True, retention_interval_s=3600.0
    )
    for offset in range(0, 2000, 250):
        store.write_results(make_records(250, start=1000.0 + offset, outputs=64))  # none synced

    report = store.enforce_retention()

    evicted = report.evicted_unsynced["results"]
    assert evicted > 0
    stats = store.stats()
    assert stats.rows == actual(store)
    assert stats.rows["results"] == 2000 - evicted == stats.unsynced_results


def test_rolled_back_transactions_change_no_count(open_store: OpenStore, make_records: MakeRecords) -> None:
    store = open_store(write_chunk_rows=8)
    store.write_results(make_records(20))
    sync_all(store)
    before = counted(store)
    # Inserts and a counted delete in one transaction that then fails: all of it rolls back.
    with suppress(RuntimeError), store._write("fail on purpose") as conn:
        conn.execute(
            "INSERT INTO results (stream, window_start, window_end, model_name, model_version, "
            "latency_ms, created_at) VALUES ('imu', 1.0, 2.0, 'm', '1', 1.0, 3.0)"
        )
        assert delete_rows(conn, "results", "DELETE FROM results WHERE id <= 5") == 5
        raise RuntimeError("simulated failure mid-transaction")
    assert counted(store) == actual(store) == before
    # A batch of several INSERT statements refused by its last one: the first statements' rows
    # (and the ids they took) roll back; the valid records are then written on their own.
    batch = make_records(30)
    batch[-1].window_start = float("nan")
    ids = store.write_results(batch)
    assert ids == list(range(21, 50))  # no ids lost to the rolled-back attempts
    after = counted(store)
    assert after == actual(store)
    assert after["results"] == before["results"] + 29
    assert after["events"] == before["events"] + 1  # store.rejected_results


def test_counts_survive_reopening(tmp_path: Path, make_records: MakeRecords) -> None:
    path = tmp_path / "store.db"
    config = StoreConfig(path=path, max_age_s=3600.0, retention_interval_s=3600.0)
    with Store.open(path, config) as store:
        store.write_results(make_records(30, start=time.time() - 7200))
        sync_all(store)
        store.enforce_retention()
        store.write_results(make_records(12))
        expected = actual(store)
    with Store.open(path, config) as store:
        assert counted(store) == expected
        assert expected["results"] == 12


def test_delete_rows_refuses_a_table_it_does_not_count() -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(ValueError, match="not a history table"):
        delete_rows(conn, "outbox", "DELETE FROM outbox")
    conn.close()


_store_names = itertools.count()

operations = st.lists(
    st.one_of(
        st.tuples(st.just("results"), st.integers(1, 150)),
        st.tuples(st.just("results"), st.integers(100, 300)),
        st.tuples(st.just("metrics"), st.integers(1, 20)),
        st.tuples(st.just("event"), st.just(0)),
        st.tuples(st.just("ack"), st.integers(0, 20)),
        st.tuples(st.just("retention"), st.integers(0, 4000)),
        st.tuples(st.just("refused"), st.integers(9, 30)),
        st.tuples(st.just("abort"), st.integers(1, 10)),
        st.tuples(st.just("reopen"), st.just(0)),
    ),
    min_size=4,
    max_size=30,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_counts_equal_count_star_after_any_sequence(tmp_path: Path, ops: list[tuple[str, int]]) -> None:
    path = tmp_path / f"store-{next(_store_names)}.db"
    # Small caps and large rows, so retention deletes by age, for size and evicts unsynced rows.
    config = StoreConfig(
        path=path,
        max_age_s=600.0,
        max_bytes=160 * KiB,  # an empty store is 64 KiB
        hard_max_bytes=256 * KiB,
        store_raw_outputs=True,
        retention_interval_s=3600.0,
        write_chunk_rows=8,
    )
    base = time.time() - 2000.0
    written = 0

    def records(n: int) -> list[ResultRecord]:
        start = base + written
        return [
            ResultRecord("imu", start + i, start + i + 1.0, "m", "1", "a", 0.5, [0.1] * 128, 1.0,
                         window_seq=written + i, created_at=start + i)
            for i in range(n)
        ]  # fmt: skip

    store = Store.open(path, config)
    try:
        for op, arg in ops:
            if op == "results":
                store.write_results(records(arg))
                written += arg
            elif op == "metrics":
                store.write_metrics(metrics(arg, base + written))
            elif op == "event":
                store.add_event("test.event", "hello")
            elif op == "ack":
                store.outbox_ack([i.id for i in store.outbox_peek(arg)])
            elif op == "retention":
                report = store.enforce_retention(now=base + arg)
                for kind, counts in (
                    ("by age", report.deleted_by_age),
                    ("for size", report.deleted_for_size),
                    ("evicted", report.evicted_unsynced),
                ):
                    for table in counts:
                        event(f"deleted {kind}: {table}")  # --hypothesis-show-statistics
            elif op == "refused":
                batch = records(arg)
                batch[arg // 2].latency_ms = float("nan")
                store.write_results(batch)
                written += arg
            elif op == "abort":
                with suppress(RuntimeError), store._write("fail on purpose") as conn:
                    conn.execute(
                        "INSERT INTO results (stream, window_start, window_end, model_name, model_version, "
                        "latency_ms, created_at) VALUES ('imu', 1.0, 2.0, 'm', '1', 1.0, 3.0)"
                    )
                    delete_rows(
                        conn,
                        "results",
                        "DELETE FROM results WHERE id IN (SELECT id FROM results LIMIT ?)",
                        (arg,),
                    )
                    conn.execute("INSERT INTO metrics (ts, name, value) VALUES (1.0, 'x', 1.0)")
                    raise RuntimeError("rolled back")
            else:
                store.close()
                store = Store.open(path, config)
            assert counted(store) == actual(store), (op, arg)
    finally:
        store.close()


def test_rows_deleted_behind_its_back_are_reported_by_check_and_recounted_by_vacuum(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store()
    store.write_results(make_records(50))
    store.write_metrics(metrics(7, time.time()))
    store.close()
    db = tmp_path / "store.db"
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM results WHERE id % 5 = 0")  # the sqlite3 shell, not edgefleet
    conn.commit()
    conn.close()

    info, problems = check_database(db)
    assert problems == []  # the file is sound; only a kept count is wrong
    assert info.miscounted == {"results": (50, 40)}
    assert main(["store", "check", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "results holds 40 rows but its kept count says 50" in out
    assert "store vacuum" in out

    assert main(["store", "vacuum", "--db", str(db)]) == 0
    assert "recounted results: 40 rows (the kept count said 50)" in capsys.readouterr().out
    assert check_database(db)[0].miscounted == {}
    reopened = open_store()
    assert counted(reopened) == actual(reopened)
    assert reopened.recount_rows() == {}  # nothing left to repair
