"""Schema migrations: a store written by schema version 1 opens, migrates and keeps its data.

``data/store_v1.db`` is a store as edgefleet with schema version 1 left it (WAL, incremental
auto-vacuum, outputs as JSON text). Regenerate it only if migration 1 itself changes, which it
must not once released: ``python tests/integration/agent/store/test_migrations.py``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from edgefleet.agent.store import MIGRATIONS, SCHEMA_VERSION, ResultRecord, Store, StoreConfig, migrate
from edgefleet.agent.store import migrations as migrations_module
from edgefleet.errors import StoreError

pytestmark = pytest.mark.integration

V1_FIXTURE = Path(__file__).parent / "data" / "store_v1.db"
OUTPUTS = [[0.1, 0.2, 0.7], [1e-30, 0.5, 123456.789], None, [0.0, -1.5, 3.25], [0.25, 0.25, 0.5]]


def build_v1_store(path: Path) -> None:
    """Apply only migration 1, then insert rows the way the v1 code did."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    assert migrate(conn, target=1) == [1]
    conn.execute("BEGIN")
    for i, outputs in enumerate(OUTPUTS):
        conn.execute(
            "INSERT INTO results (stream, window_start, window_end, model_name, model_version, label, score, "
            "outputs, latency_ms, answered_by, fallback_reason, window_seq, created_at, synced_at) "
            "VALUES (?, ?, ?, 'motion', '1.0.0', ?, ?, ?, 2.0, ?, ?, ?, ?, ?)",
            (
                "imu",
                100.0 + i,
                101.0 + i,
                f"c{i}",
                0.9,
                None if outputs is None else json.dumps(outputs),
                "cloud" if i == 3 else "edge",
                "low_confidence" if i == 3 else None,
                i,
                200.0 + i,
                250.0 if i < 2 else None,  # the first two were synced
            ),
        )
    # Id 6 existed and was evicted: the new schema must not hand out 6 again.
    conn.execute(
        "INSERT INTO results (id, stream, window_start, window_end, model_name, model_version, latency_ms, "
        "created_at) VALUES (6, 'imu', 0, 1, 'm', '1', 1, 1)"
    )
    conn.execute("DELETE FROM results WHERE id = 6")
    conn.execute(
        "INSERT INTO outbox (kind, priority, created_at, payload, first_result_id, last_result_id, "
        "approx_bytes) VALUES ('results', 2, 300.0, NULL, 3, 5, 480)"
    )
    conn.execute(
        "INSERT INTO outbox (kind, priority, created_at, payload, approx_bytes) "
        "VALUES ('status', 0, 301.0, '{\"state\": \"running\"}', 21)"
    )
    conn.execute(
        "INSERT INTO metrics (ts, name, value, labels) VALUES (5.0, 'cpu', 0.5, '{\"core\": \"0\"}')"
    )
    conn.execute(
        "INSERT INTO events (ts, kind, level, message, data) VALUES (6.0, 'boot', 'info', 'hi', NULL)"
    )
    conn.execute("COMMIT")
    conn.close()


def _assert_migrated_and_intact(store: Store) -> None:
    assert store.schema_version == SCHEMA_VERSION
    versions = [r[0] for r in store.db.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [m.version for m in MIGRATIONS]
    rows = sorted(store.query_results(limit=100), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["outputs"] for r in rows] == OUTPUTS  # JSON text became exact float64
    assert [r["synced_at"] for r in rows] == [250.0, 250.0, None, None, None]
    assert rows[3]["answered_by"] == "cloud"
    assert rows[3]["fallback_reason"] == "low_confidence"
    assert store.outbox_backlog() == {"results": 3, "status": 1}
    items = store.outbox_peek(10)
    assert [i.kind for i in items] == ["status", "results"]
    assert items[0].payload == {"state": "running"}
    assert [r["id"] for r in items[1].payload] == [3, 4, 5]  # type: ignore[index]
    assert store.db.execute("SELECT labels FROM metrics").fetchone()[0] == '{"core": "0"}'
    assert store.query_events()[0]["kind"] == "boot"
    # v8: counted, not scanned, although id 6 is a gap (rows = seq - deleted: 6 - 1).
    assert store.stats().rows == {"results": 5, "metrics": 1, "events": 1, "outbox": 2}
    # The store carries on: new ids continue after the old high-water mark.
    record = ResultRecord("imu", 1.0, 2.0, "motion", "1.0.0", "c", 0.5, [1.0], 1.0)
    assert store.write_results([record]) == [7]
    # That write ran retention: max_age_s (30 days) took the synced rows of 1970 (ids 1-2), the
    # metric and the event.
    assert store.stats().rows == {"results": 4, "metrics": 0, "events": 0, "outbox": 3}
    # v5: the old rows' created_at bounds were backfilled; the small new write widened them.
    assert store.db.execute("SELECT * FROM result_batches ORDER BY first_id").fetchall() == [
        (1, 7, 200.0, record.created_at)
    ]
    assert [r["id"] for r in store.query_results(since=203.0, limit=100)] == [7, 5, 4]
    assert store.integrity_check() == ["ok"]


def test_committed_v1_store_migrates_forward_with_data_intact(tmp_path: Path) -> None:
    assert V1_FIXTURE.is_file(), "run this file with python to build data/store_v1.db"
    path = tmp_path / "store.db"
    shutil.copy(V1_FIXTURE, path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 1
    with Store.open(path, StoreConfig(path=path, store_raw_outputs=True)) as store:
        _assert_migrated_and_intact(store)
    with Store.open(path, StoreConfig(path=path)) as store:  # reopening applies nothing twice
        assert store.schema_version == SCHEMA_VERSION


def test_freshly_built_v1_store_migrates_forward(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    build_v1_store(path)
    with Store.open(path, StoreConfig(path=path, store_raw_outputs=True)) as store:
        _assert_migrated_and_intact(store)


def test_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Store.open(path, StoreConfig(path=path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0, 'from the future')", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than") as caught:
        Store.open(path, StoreConfig(path=path))
    assert "upgrade edgefleet" in (caught.value.hint or "")
    assert "restore a backup" in (caught.value.hint or "")
    with sqlite3.connect(path) as conn:  # left exactly as it was
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_failing_migration_rolls_back_and_keeps_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    build_v1_store(path)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    patched = (MIGRATIONS[0], migrations_module.Migration(2, "broken", broken))
    monkeypatch.setattr(migrations_module, "MIGRATIONS", patched)
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="simulated"):
        migrate(conn)
    assert migrations_module.read_schema_version(conn) == 1
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    conn.close()
    monkeypatch.undo()
    with Store.open(path, StoreConfig(path=path, store_raw_outputs=True)) as store:
        _assert_migrated_and_intact(store)


if __name__ == "__main__":
    V1_FIXTURE.parent.mkdir(exist_ok=True)
    V1_FIXTURE.unlink(missing_ok=True)
    build_v1_store(V1_FIXTURE)
    print(f"wrote {V1_FIXTURE}", file=sys.stderr)


def test_v5_replaces_the_time_index_with_batch_bounds_that_cover_every_row(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    build_v1_store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=4) == [2, 3, 4]
    # More rows than one backfill group (256 ids), created out of id order as after a clock jump.
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO results (stream, window_start, window_end, model_name, model_version, latency_ms, "
        "created_at) VALUES ('imu', 0.0, 1.0, 'm', '1', 1.0, ?)",
        [(5000.0 - i if i % 7 else 10.0 + i,) for i in range(600)],
    )
    conn.execute("COMMIT")
    assert migrate(conn, target=5) == [5]
    indexes = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'results'"
        )
    }
    assert indexes == set()  # v5: a result enters the table's B-tree only
    batches = conn.execute(
        "SELECT first_id, last_id, min_created_at, max_created_at FROM result_batches"
    ).fetchall()
    assert [(first, last) for first, last, _, _ in batches] == [(1, 256), (257, 512), (513, 606)]
    for first, last, low, high in batches:
        bounds = conn.execute(
            "SELECT min(created_at), max(created_at) FROM results WHERE id BETWEEN ? AND ?", (first, last)
        ).fetchone()
        assert (low, high) == bounds
    (plan,) = [
        row[-1] for row in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM results WHERE id BETWEEN 1 AND 9")
    ]
    assert "INTEGER PRIMARY KEY" in plan  # a batch's rows are one rowid range
    conn.close()
    with Store.open(path, StoreConfig(path=path)) as store:
        newest = store.query_results(limit=3)
        assert [r["created_at"] for r in newest] == [5000.0 - 1, 5000.0 - 2, 5000.0 - 3]
        assert len(store.query_results(since=4500.0, limit=1000)) == sum(
            1 for i in range(600) if i % 7 and 5000.0 - i >= 4500.0
        )


def test_v6_drops_the_metrics_name_index_and_keeps_every_metric(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    build_v1_store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=5) == [2, 3, 4, 5]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO metrics (ts, name, value, labels) VALUES (?, ?, 1.0, '{}')",
        [(1000.0 + i, f"m{i % 17}") for i in range(340)],
    )
    conn.execute("COMMIT")
    before = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    assert migrate(conn, target=6) == [6]
    indexes = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'metrics'"
        )
    }
    assert indexes == {"metrics_ts"}  # retention's age cut still has its index
    assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == before
    conn.close()


def test_v8_counts_the_rows_a_v7_store_already_deleted(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    build_v1_store(path)  # results ids 1-5, id 6 inserted and deleted
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=7) == [2, 3, 4, 5, 6, 7]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO results (stream, window_start, window_end, model_name, model_version, latency_ms, "
        "created_at, synced_at) VALUES ('imu', 0.0, 1.0, 'm', '1', 1.0, ?, ?)",
        [(1000.0 + i, 2000.0 if i < 200 else None) for i in range(300)],
    )
    conn.executemany(
        "INSERT INTO metrics (ts, name, value) VALUES (?, 'cpu', 1.0)", [(10.0 + i,) for i in range(40)]
    )
    conn.executemany(
        "INSERT INTO events (ts, kind, level, message) VALUES (?, 'x', 'info', 'm')",
        [(20.0 + i,) for i in range(9)],
    )
    conn.execute("INSERT INTO result_batches VALUES (7, 306, 1000.0, 1299.0)")  # as a v7 write records it
    conn.execute("COMMIT")
    # What v7's retention did: deletes from every history table, counted nowhere.
    conn.execute("DELETE FROM results WHERE id BETWEEN 10 AND 150")
    conn.execute("DELETE FROM metrics WHERE ts < 35.0")
    conn.execute("DELETE FROM events WHERE ts < 24.0")
    expected = {
        t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("results", "metrics", "events")
    }
    assert expected == {"results": 305 - 141, "metrics": 15, "events": 5}

    assert migrate(conn, target=8) == [8]

    deleted = dict(conn.execute("SELECT key, value FROM store_meta WHERE key LIKE '%_deleted_total'"))
    assert deleted == {
        "results_deleted_total": 306 - 164,
        "metrics_deleted_total": 26,
        "events_deleted_total": 5,
    }
    conn.close()
    config = StoreConfig(path=path, max_age_s=None, retention_interval_s=3600.0)
    with Store.open(path, config) as store:
        assert store.stats().rows == {**expected, "outbox": 2}
        store.write_results([ResultRecord("imu", 1.0, 2.0, "m", "1", "c", 0.5, None, 1.0)] * 3)
        store.enforce_retention(now=1e12)  # nothing to age out (max_age_s None) nor to trim
        assert store.stats().rows["results"] == 167
    config = config.model_copy(update={"max_age_s": 1.0})
    with Store.open(path, config) as store:  # reopened; retention now deletes every synced row
        report = store.enforce_retention(now=1e12)
        assert report.deleted_by_age == {"results": 2 + 200 - 141, "metrics": 15, "events": 5}
        counts = {t: store.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in expected}
        assert {t: n for t, n in store.stats().rows.items() if t != "outbox"} == counts
        assert counts == {"results": 167 - 61, "metrics": 0, "events": 0}
