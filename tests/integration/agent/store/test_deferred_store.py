"""Schema v7 and deferred windows on a real SQLite store: the cloud answer beside the edge one,
late answers attached to the same result once, the byte cap, and v6 stores migrating forward."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edgefleet.agent.store import SCHEMA_VERSION, ResultRecord, Store, StoreConfig, migrate
from edgefleet.agent.store.deferred import CloudAnswer, DeferredStore, deferred_request_id
from edgefleet.errors import StoreError

pytestmark = pytest.mark.integration

WINDOW = bytes(range(200)) * 12  # 2400 bytes: a 100 x 6 float32 window


def edge(seq: int, reason: str = "low_confidence:timeout") -> ResultRecord:
    return ResultRecord(
        "imu", float(seq), seq + 2.0, "watch-edge", "1.0.0", "ABD", 0.41, [0.41, 0.3], 3.0,
        fallback_reason=reason, window_seq=seq,
    )  # fmt: skip


def open_store(tmp_path: Path) -> Store:
    path = tmp_path / "store.db"
    return Store.open(path, StoreConfig(path=path, store_raw_outputs=True))


def row(store: Store, result_id: int) -> dict[str, object]:
    return next(r for r in store.query_results(limit=1000) if r["id"] == result_id)


def test_v6_store_migrates_to_v7_with_outcomes_derived(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=6)[-1] == 6
    for i, (by, reason) in enumerate(
        [("edge", None), ("cloud", "low_confidence"), ("edge", "low_confidence:timeout")]
    ):
        conn.execute(
            "INSERT INTO results (stream, window_start, window_end, model_name, model_version, label, "
            "latency_ms, answered_by, fallback_reason, created_at) VALUES "
            "('imu', ?, ?, 'm', '1', 'A', 1.0, ?, ?, ?)",
            (float(i), i + 1.0, by, reason, 100.0 + i),
        )
    conn.execute("INSERT INTO result_batches VALUES (1, 3, 100.0, 102.0)")  # as a v6 write records it
    conn.close()
    with Store.open(path, StoreConfig(path=path)) as store:
        assert store.schema_version == SCHEMA_VERSION >= 7
        rows = sorted(store.query_results(limit=10), key=lambda r: r["id"])
        assert [r["fallback_outcome"] for r in rows] == ["edge", "cloud", "timeout"]
        assert [r["late"] for r in rows] == [False] * 3
        assert [r["cloud_label"] for r in rows] == [None] * 3
        assert DeferredStore(store, max_bytes=10_000).stats().windows == 0
        assert store.integrity_check() == ["ok"]


def test_a_failing_v7_leaves_v6_and_the_next_open_applies_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=6)
    conn.close()
    from edgefleet.agent.store import migrations

    def broken(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE cloud_answers (result_id INTEGER PRIMARY KEY)")
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    real = migrations.MIGRATIONS
    broken_v7 = (*real[:6], migrations.Migration(7, "x", broken), *real[7:])
    monkeypatch.setattr(migrations, "MIGRATIONS", broken_v7)
    with pytest.raises(StoreError):
        Store.open(path, StoreConfig(path=path))
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 6
        tables = [r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "cloud_answers" not in tables  # the half-applied CREATE was rolled back
    monkeypatch.setattr(migrations, "MIGRATIONS", real)
    with Store.open(path, StoreConfig(path=path)) as store:
        assert store.schema_version == SCHEMA_VERSION


def test_kept_window_then_late_answer_updates_the_same_result_once(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        deferred = DeferredStore(store, max_bytes=100_000)
        result_id, dropped = deferred.keep(edge(1), request_id="live-1", shape=(100, 6), data=WINDOW)
        assert dropped == 0
        stored = row(store, result_id)
        assert (stored["answered_by"], stored["fallback_outcome"], stored["label"]) == (
            "edge",
            "deferred",
            "ABD",
        )
        assert store.outbox_backlog() == {"results": 1}  # the edge answer is synced as usual
        assert deferred.knows("live-1")
        assert not deferred.knows("live-2")
        [waiting] = deferred.due(limit=10)
        assert (waiting.result_id, waiting.shape, waiting.data) == (result_id, (100, 6), WINDOW)

        answer = CloudAnswer("FLX", 0.93, [0.01, 0.93], "2.0.0")
        assert deferred.attach("live-1", answer) == result_id
        stored = row(store, result_id)
        assert stored["label"] == "ABD"  # the real-time decision stays
        assert (stored["cloud_label"], stored["cloud_score"], stored["cloud_model_version"]) == (
            "FLX",
            0.93,
            "2.0.0",
        )
        assert stored["cloud_outputs"] == [0.01, 0.93]
        assert (stored["late"], stored["fallback_outcome"]) == (True, "late")
        assert stored["fallback_reason"] == "low_confidence:timeout"
        items = [i for i in store.outbox_peek(10) if i.kind == "result_update"]
        assert len(items) == 1
        assert items[0].payload == {
            "result_id": result_id, "stream": "imu", "window_seq": 1, "window_end": 3.0,
            "edge_label": "ABD", "edge_model_version": "1.0.0", "fallback_reason": "low_confidence:timeout",
            "cloud_label": "FLX", "cloud_score": 0.93, "cloud_model_version": "2.0.0",
        }  # fmt: skip

        # A second answer (a resend's, or a duplicate delivery) changes nothing and queues nothing.
        assert deferred.attach("live-1", CloudAnswer("SPN", 0.5, None, "2.0.0")) is None
        assert deferred.attach(deferred_request_id(result_id, "abc"), answer) is None
        assert row(store, result_id)["cloud_label"] == "FLX"
        assert len([i for i in store.outbox_peek(10) if i.kind == "result_update"]) == 1
        assert len(store.query_results(limit=100)) == 1
        assert deferred.due(limit=10) == []


def test_an_answer_to_a_resend_is_found_by_its_result_id(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        deferred = DeferredStore(store, max_bytes=100_000)
        result_id, _ = deferred.keep(edge(1), request_id="live-1", shape=(100, 6), data=WINDOW)
        deferred.sent(1, deferred_request_id(result_id, "aaaa"), retry_at=0.0)
        [again] = deferred.due(limit=1)
        assert (again.attempts, again.request_id) == (1, deferred_request_id(result_id, "aaaa"))
        # The answer to an earlier attempt (another nonce) still belongs to this window.
        assert (
            deferred.attach(deferred_request_id(result_id, "0bbb"), CloudAnswer("FLX", 0.9, None, "2"))
            == result_id
        )
        assert (
            deferred.attach(deferred_request_id(result_id + 1, "aaaa"), CloudAnswer("A", 1, None, "2"))
            is None
        )


def test_the_byte_cap_drops_the_oldest_windows_and_counts_them(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        deferred = DeferredStore(store, max_bytes=int(len(WINDOW) * 2.5))
        ids = [deferred.keep(edge(i), request_id=f"r{i}", shape=(100, 6), data=WINDOW) for i in range(4)]
        assert [d for _, d in ids] == [0, 0, 1, 1]
        stats = deferred.stats()
        assert (stats.windows, stats.bytes, stats.dropped_total) == (2, 2 * len(WINDOW), 2)
        assert [w.result_id for w in deferred.due(limit=10)] == [ids[2][0], ids[3][0]]
        outcomes = [row(store, rid)["fallback_outcome"] for rid, _ in ids]
        assert outcomes == ["timeout", "timeout", "deferred", "deferred"]  # dropped: edge answer, flagged
        assert len(store.query_results(limit=100)) == 4  # no result lost
        # One window bigger than the whole cap is dropped alone; the others stay.
        big, dropped = deferred.keep(edge(9), request_id="big", shape=(1000, 6), data=WINDOW * 10)
        assert dropped == 1
        assert row(store, big)["fallback_outcome"] == "timeout"
        assert deferred.stats().windows == 2


def test_a_window_whose_result_was_removed_is_not_answered(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        deferred = DeferredStore(store, max_bytes=100_000)
        result_id, _ = deferred.keep(edge(1), request_id="live-1", shape=(100, 6), data=WINDOW)
        store.db.execute("DELETE FROM results WHERE id = ?", [result_id])
        assert deferred.attach("live-1", CloudAnswer("FLX", 0.9, None, "2")) is None
        assert deferred.stats().windows == 0
        assert [i.kind for i in store.outbox_peek(10)] == ["results"]


def test_bad_records_and_caps_are_refused_with_a_hint(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        with pytest.raises(StoreError, match="deferred window cap") as caught:
            DeferredStore(store, max_bytes=-1)
        assert "deferred_max_bytes" in (caught.value.hint or "")
        deferred = DeferredStore(store, max_bytes=100_000)
        bad = edge(1)
        bad.window_start = float("nan")
        with pytest.raises(StoreError, match="window_start must be a finite number"):
            deferred.keep(bad, request_id="x", shape=(1,), data=b"1234")
        assert store.query_results(limit=10) == []
        assert deferred.stats().windows == 0
        assert json.loads(json.dumps(deferred.stats().__dict__)) == {
            "windows": 0,
            "bytes": 0,
            "dropped_total": 0,
        }
