"""Backup and restore of real databases, and the `edgefleet store` commands."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edgefleet.agent.store import SCHEMA_VERSION, Store, StoreConfig, backup, check_database, restore
from edgefleet.cli.main import main
from edgefleet.errors import StoreError

if TYPE_CHECKING:
    from tests.integration.agent.store.conftest import MakeRecords, OpenStore

pytestmark = pytest.mark.integration


def _controller_like_db(path: Path) -> None:
    """A non-store edgefleet database (the controller keeps devices in SQLite by default)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE devices (id TEXT PRIMARY KEY, last_seen REAL)")
    conn.executemany("INSERT INTO devices VALUES (?, ?)", [(f"dev-{i}", float(i)) for i in range(50)])
    conn.commit()
    conn.close()


def test_backup_while_writing_is_a_consistent_snapshot(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(100))
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_writing() -> None:
        try:
            while not stop.is_set():
                store.write_results(make_records(50))
                store.outbox_ack([i.id for i in store.outbox_peek(1)])
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        reports = [backup(store.path, tmp_path / f"backup-{n}.db") for n in range(3)]
    finally:
        stop.set()
        writer.join()
    assert not errors
    for report in reports:
        assert report.kind == "device-store"
        assert report.schema_version == SCHEMA_VERSION
        copy = Path(report.destination)
        assert not copy.with_name(copy.name + "-wal").exists()  # one self-contained file
        conn = sqlite3.connect(copy)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        ids = [r[0] for r in conn.execute("SELECT id FROM results ORDER BY id")]
        assert ids == list(range(1, len(ids) + 1))  # whole batches only
        unsynced = {r[0] for r in conn.execute("SELECT id FROM results WHERE synced_at IS NULL")}
        ranges = conn.execute("SELECT first_result_id, last_result_id FROM outbox WHERE kind = 'results'")
        assert sorted(i for a, b in ranges for i in range(a, b + 1)) == sorted(unsynced)
        conn.close()


def test_restore_replaces_a_stopped_store_and_the_agent_carries_on(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(10))
    saved = backup(store.path, tmp_path / "saved.db")
    store.write_results(make_records(5))
    store.close()

    with pytest.raises(StoreError, match="refusing to overwrite") as caught:
        restore(saved.destination, store.path)
    assert "--force" in (caught.value.hint or "")

    info = restore(saved.destination, store.path, force=True)
    assert info.kind == "device-store"
    with Store.open(store.path, StoreConfig(path=store.path)) as reopened:
        assert reopened.outbox_backlog() == {"results": 10}
        assert reopened.write_results(make_records(1)) == [11]


def test_restore_refuses_a_store_held_open(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(3))
    saved = backup(store.path, tmp_path / "saved.db")
    with pytest.raises(StoreError, match="has the store open") as caught:
        restore(saved.destination, store.path, force=True)
    assert "stop the agent" in (caught.value.hint or "")
    assert store.outbox_backlog() == {"results": 3}  # untouched, still usable


def test_restore_refuses_a_database_open_without_a_store(tmp_path: Path) -> None:
    db = tmp_path / "controller.db"
    _controller_like_db(db)
    saved = backup(db, tmp_path / "saved.db")
    holder = sqlite3.connect(db)  # e.g. the controller, idle
    holder.execute("SELECT count(*) FROM devices").fetchone()
    try:
        with pytest.raises(StoreError, match="open in another process or connection"):
            restore(saved.destination, db, force=True)
    finally:
        holder.close()
    info = restore(saved.destination, db, force=True)
    assert info.kind == "sqlite"
    assert sqlite3.connect(db).execute("SELECT count(*) FROM devices").fetchone() == (50,)


def test_restore_refuses_a_backup_newer_than_the_code(tmp_path: Path, open_store: OpenStore) -> None:
    store = open_store("future.db")
    store.close()
    with sqlite3.connect(store.path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0, 'future')", (SCHEMA_VERSION + 1,))
    target = tmp_path / "restored.db"
    with pytest.raises(StoreError, match="newer than") as caught:
        restore(store.path, target)
    assert "upgrade edgefleet" in (caught.value.hint or "")
    assert not target.exists()


def test_restore_refuses_a_damaged_backup_and_kind_mismatch(tmp_path: Path, open_store: OpenStore) -> None:
    store = open_store()
    store.close()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError, match="not a readable SQLite database"):
        restore(junk, tmp_path / "x.db")
    other = tmp_path / "controller.db"
    _controller_like_db(other)
    with pytest.raises(StoreError, match="with a backup of a sqlite"):
        restore(other, store.path)
    with pytest.raises(StoreError, match="does not exist"):
        restore(tmp_path / "missing.db", store.path)


def test_restore_removes_a_stale_wal(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(3))
    saved = backup(store.path, tmp_path / "saved.db")
    store.close()
    stale = store.path.with_name(store.path.name + "-wal")
    stale.write_bytes(b"\x37\x7f\x06\x82" + b"\0" * 4000)  # a WAL header magic and junk
    restore(saved.destination, store.path, force=True)
    assert not stale.exists()
    _, problems = check_database(store.path)
    assert problems == []


def test_backup_refuses_to_overwrite_and_names_directory_targets(
    tmp_path: Path, open_store: OpenStore
) -> None:
    store = open_store()
    out = tmp_path / "backups"
    out.mkdir()
    report = backup(store.path, out)
    assert Path(report.destination).parent == out
    assert Path(report.destination).name.startswith("store-")
    with pytest.raises(StoreError, match="already exists"):
        backup(store.path, report.destination)
    backup(store.path, report.destination, overwrite=True)
    with pytest.raises(StoreError, match="is the database itself"):
        backup(store.path, store.path, overwrite=True)


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_backup_check_restore_vacuum_stats(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store()
    store.write_results(make_records(20))
    store.close()
    db, dest = str(store.path), str(tmp_path / "b.db")

    assert main(["store", "backup", "--db", db, dest]) == 0
    assert "backed up" in capsys.readouterr().out
    assert main(["store", "check", "--db", dest]) == 0
    assert f"ok (device-store, schema version {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["store", "check", "--db", db, "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert (checked["ok"], checked["schema_version"], checked["supported"]) == (
        True,
        SCHEMA_VERSION,
        SCHEMA_VERSION,
    )

    assert main(["store", "restore", dest, "--db", db]) == 1
    assert "hint: pass --force" in capsys.readouterr().err
    assert main(["store", "restore", dest, "--db", db, "--force"]) == 0
    assert "restored" in capsys.readouterr().out

    assert main(["store", "vacuum", "--db", db, "--retention"]) == 0
    assert "vacuumed" in capsys.readouterr().out
    assert main(["store", "stats", "--db", db, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"]["results"] == 20
    assert stats["outbox_backlog"] == {"results": 20}


def test_cli_check_reports_damage_with_exit_1(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(store_raw_outputs=True)
    store.write_results(make_records(2000, outputs=32))
    store.checkpoint("TRUNCATE")
    store.close()
    raw = bytearray(store.path.read_bytes())
    page = 4096
    for offset in range(10 * page, 30 * page, page):  # smash b-tree pages in the middle
        raw[offset : offset + 64] = b"\xff" * 64
    store.path.write_bytes(bytes(raw))
    assert main(["store", "check", "--db", str(store.path)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out
    assert "edgefleet store restore" in out


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "check", "--db", str(tmp_path / "missing.db")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert "hint:" in err
    assert main(["store", "stats", "--db", str(tmp_path / "missing.db")]) == 1
    assert "no store at" in capsys.readouterr().err
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["store", "check", "--db", str(empty)]) == 1
    assert "empty" in capsys.readouterr().out


def test_cli_finds_the_store_through_the_agent_config(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("edgefleet.agent.config")
    example = (Path(__file__).resolve().parents[4] / "agent" / "example.toml").read_text()
    store = open_store()
    store.write_results(make_records(3))
    store.close()
    config = tmp_path / "agent.toml"
    config.write_text(example.replace('path = "/var/lib/edgefleet/store.db"', f'path = "{store.path}"'))
    assert str(store.path) in config.read_text()
    code = main(["store", "backup", "--config", str(config), str(tmp_path / "via-config.db")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (tmp_path / "via-config.db").is_file()


def test_restore_replaces_a_damaged_store_with_force(
    tmp_path: Path, open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    store.write_results(make_records(4))
    saved = backup(store.path, tmp_path / "saved.db")
    store.close()
    store.path.write_bytes(b"\x00garbage" * 4096)
    with pytest.raises(StoreError, match="refusing to overwrite"):
        restore(saved.destination, store.path)
    restore(saved.destination, store.path, force=True)
    with Store.open(store.path, StoreConfig(path=store.path)) as reopened:
        assert reopened.outbox_backlog() == {"results": 4}
