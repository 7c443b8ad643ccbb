"""The real agent under abuse: kill -9 at random points, bad samples, no broker."""

from __future__ import annotations

import json
import random
import signal
import socket
import sqlite3
import time
import urllib.request
from functools import partial
from pathlib import Path

import pytest

from tests.e2e.agent.agentproc import (
    REPLAY_CSV,
    AgentProcess,
    count_results,
    expected_windows,
    read_status,
    replay_source,
    result_ids,
    run_cli,
    write_config,
)
from tests.support.broker import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_kill_9_at_random_points_loses_nothing_committed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = state / "store.db"
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        sources=[replay_source(realtime=True, speed=50.0, loop=True)],
        batching={"max_batch_size": 8},
        health={"metrics_interval_s": 0.2},  # metrics and status writes race the kill too
    )
    rng = random.Random(20261123)
    committed: set[int] = set()
    for round_no in range(5):
        agent = AgentProcess(config, tmp_path / f"agent-{round_no}.log")
        try:
            if round_no % 2 == 0:
                # Let it get going first, so the kill lands in the middle of steady writing.
                wait_until(partial(_more_than, db, len(committed)), what=f"progress in round {round_no}")
            time.sleep(rng.uniform(0.05, 1.5))
            seen = result_ids(db)  # what a previous moment had committed, read by another connection
        finally:
            agent.kill()
        assert agent.proc.returncode == -signal.SIGKILL
        assert committed <= seen, f"round {round_no}: committed results vanished"
        committed = seen
        assert committed <= result_ids(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    assert committed <= result_ids(db)
    # ...and it restarts and carries on from there.
    with AgentProcess(config, tmp_path / "agent-final.log") as agent:
        before = count_results(db)
        wait_until(lambda: count_results(db) > before, what="results after the crashes")
        assert agent.terminate_and_wait() == 0, agent.output()
    assert committed <= result_ids(db)


def _more_than(db: Path, floor: int) -> bool:
    return count_results(db) > floor


def _corrupt_copy(target: Path) -> tuple[Path, int, int]:
    """The replay CSV with unreadable, NaN and infinite values in some rows."""
    lines = REPLAY_CSV.read_text().splitlines()
    bad_rows = 0
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        if i % 97 == 5:
            cells[2] = ["abc", "nan", "inf", ""][bad_rows % 4]
            bad_rows += 1
        out.append(",".join(cells))
    target.write_text("\n".join(out) + "\n")
    return target, len(lines) - 1, bad_rows


def test_bad_rows_in_a_replay_are_counted_and_the_agent_carries_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    recording, rows, bad_rows = _corrupt_copy(tmp_path / "bad.csv")
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        sources=[replay_source(file=recording)],
        batching={"backpressure": "block"},
    )
    with AgentProcess(config, tmp_path / "agent.log", args=("--until-sources-finish",)) as agent:
        assert agent.wait() == 0, agent.output()
    final = read_status(state)
    assert final is not None
    stream = final["streams"]["imu"]
    assert stream["bad_samples"] == bad_rows
    assert stream["samples"] == rows - bad_rows
    # The source refuses the bad rows; every accepted sample is windowed and every window stored.
    assert count_results(state / "store.db") == expected_windows(rows - bad_rows)
    assert "bad sample" in agent.output()


def test_garbage_datagrams_on_a_udp_source_are_counted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port_udp()
    metrics_port = free_port()
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        sources=[{"type": "udp", "name": "wire", "port": port, "channels": 6, "format": "json"}],
        batching={"batch_timeout_s": 0.01},
        health={"prometheus": {"enabled": True, "port": metrics_port}},
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: (read_status(state) or {}).get("state") == "running", what="agent running")
        garbage = [b"\xff\xfe not utf8", b"{not json", b"[1, 2, 3]", b'{"values": [1, 2, 3, 4, 5, "x"]}']
        good = b"\n".join(json.dumps([0.1 * i, 0.2, 0.3, 0.4, 0.5, 0.6]).encode() for i in range(60))

        def bad_counted() -> bool:
            for payload in [*garbage, good]:
                sender.sendto(payload, ("127.0.0.1", port))
            stream = ((read_status(state) or {}).get("streams") or {}).get("wire") or {}
            return stream.get("bad_samples", 0) >= len(garbage) and count_results(state / "store.db") > 0

        wait_until(bad_counted, what="bad samples counted and good ones inferred")
        assert agent.proc.poll() is None
        wait_until(lambda: 'bad_samples_total{stream="wire"}' in _scrape(metrics_port), what="Prometheus")
        status = run_cli("agent", "status", "--config", str(config))
        assert status.returncode == 0, status.stdout + status.stderr
        assert agent.terminate_and_wait() == 0, agent.output()
    sender.close()


def _unsynced(state: Path) -> int:
    store = (read_status(state) or {}).get("store") or {}
    return int(store.get("unsynced_results") or 0)


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def free_port_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sync_enabled_without_a_broker_still_stores_results(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = state / "store.db"
    port = free_port()  # nothing listens here
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        sources=[replay_source(realtime=True, speed=50.0)],
        sync={"enabled": True, "host": "127.0.0.1", "port": port, "reconnect_max_s": 1.0},
    )
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) >= 20, what="results stored while offline")
        wait_until(lambda: _unsynced(state) >= 20, what="store facts in the status file")
        out = run_cli("agent", "status", "--config", str(config), "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        status = json.loads(out.stdout)
        assert status["healthy"] is True
        assert status["store"]["unsynced_results"] >= 20
        assert status["sync"]["running"] is True
        assert status["sync"]["connected"] is False
        assert agent.terminate_and_wait() == 0, agent.output()
