"""kill -9 at random moments never corrupts the store nor loses a committed result."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgefleet.agent.store import ResultRecord, Store, StoreConfig

pytestmark = pytest.mark.integration

WRITER = Path(__file__).with_name("crash_writer.py")
REPO_ROOT = Path(__file__).resolve().parents[4]
ROUNDS = 8


def _run_and_kill(db: Path, synchronous: str, seed: int, rng: random.Random) -> list[int]:
    """Start the writer, SIGKILL it after a random number of commits; return the ids it reported."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db), synchronous, str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.stdout is not None
    committed: list[int] = []
    target = rng.randint(3, 60)
    # Kill from another thread after a random delay too, so some kills land mid-transaction
    # rather than right after a print.
    timer = threading.Timer(rng.uniform(0.2, 1.2), lambda: proc.send_signal(signal.SIGKILL))
    try:
        first = proc.stdout.readline()
        assert first.strip() == "ready", proc.stderr.read() if proc.stderr else first
        timer.start()
        for line in proc.stdout:
            committed.append(int(line.split()[1]))
            if len(committed) >= target:
                proc.send_signal(signal.SIGKILL)
    finally:
        timer.cancel()
        proc.kill()
        proc.wait(timeout=30)
        stderr = proc.stderr.read() if proc.stderr else ""
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, stderr
    return committed


def test_sigkill_never_corrupts_nor_loses_committed_results(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    rng = random.Random(20261123)
    reported: list[int] = []
    for round_no in range(ROUNDS):
        synchronous = ("NORMAL", "FULL", "OFF")[round_no % 3]
        reported += _run_and_kill(db, synchronous, seed=round_no, rng=rng)
        # Plain sqlite3, before anything of ours touches the file: WAL recovery happens here.
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"round {round_no}"
            ids = [row[0] for row in conn.execute("SELECT id FROM results ORDER BY id")]
            ranges = conn.execute(
                "SELECT first_result_id, last_result_id FROM outbox WHERE kind = 'results'"
            ).fetchall()
            unsynced = {row[0] for row in conn.execute("SELECT id FROM results WHERE synced_at IS NULL")}
            # Each batch is atomic with its created_at bounds too (schema v5): no result outside them.
            unbounded = conn.execute(
                "SELECT count(*) FROM results r WHERE NOT EXISTS (SELECT 1 FROM result_batches b "
                "WHERE r.id BETWEEN b.first_id AND b.last_id "
                "AND r.created_at BETWEEN b.min_created_at AND b.max_created_at)"
            ).fetchone()[0]
        finally:
            conn.close()
        lost = set(reported) - set(ids)
        assert not lost, f"round {round_no} ({synchronous}): committed ids lost: {sorted(lost)[:10]}"
        assert ids == list(range(1, len(ids) + 1)), f"round {round_no}: holes in the results"
        # Each batch is atomic with its outbox item: every unsynced row is covered exactly once.
        covered = [i for first, last in ranges for i in range(first, last + 1)]
        assert sorted(covered) == sorted(unsynced), f"round {round_no}: outbox and results disagree"
        assert unbounded == 0, f"round {round_no}: {unbounded} results outside their batch's bounds"
    assert len(reported) >= ROUNDS  # every round committed something before its kill

    with Store.open(db, StoreConfig(path=db)) as store:  # reopens and carries on
        assert store.integrity_check() == ["ok"]
        # The kept row counts (schema v8) are transactional like the rows: exact after the kills.
        counts = {t: store.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in store.stats().rows}
        assert store.stats().rows == counts
        assert counts["results"] == len(ids)
        [new_id] = store.write_results([ResultRecord("imu", 1.0, 2.0, "m", "1", None, None, None, 1.0)])
        assert new_id > max(reported)
