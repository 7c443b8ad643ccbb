"""The real `edgefleet agent run` process: sd_notify, SIGTERM drain, SIGHUP reload, status."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.e2e.agent.agentproc import (
    REPLAY_ROWS,
    AgentProcess,
    count_results,
    demo_bundle,
    events,
    expected_windows,
    read_status,
    replay_source,
    run_cli,
    write_config,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


class NotifyListener:
    """A real NOTIFY_SOCKET: a Unix datagram socket collecting what the agent sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def seen(self, key: str) -> list[dict[str, str]]:
        return [m for m in list(self.messages) if key in m]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_sd_notify_ready_status_watchdog_stopping(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        sources=[replay_source(realtime=True, speed=20.0, loop=True)],
    )
    listener = NotifyListener(tmp_path / "notify.sock")
    try:
        env = {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "400000"}
        with AgentProcess(config, tmp_path / "agent.log", env=env) as agent:
            wait_until(lambda: listener.seen("READY"), what="READY=1")
            wait_until(lambda: len(listener.seen("WATCHDOG")) >= 2, what="two WATCHDOG=1 pings")
            wait_until(lambda: len(listener.seen("STATUS")) >= 2, what="STATUS= updates")
            agent.signal(signal.SIGHUP)
            wait_until(lambda: listener.seen("RELOADING"), what="RELOADING=1")
            wait_until(lambda: len(listener.seen("READY")) >= 2, what="READY=1 after the reload")
            assert agent.terminate_and_wait() == 0, agent.output()
        stopping = listener.seen("STOPPING")
        assert stopping, listener.messages
        assert all(m["WATCHDOG"] == "1" for m in listener.seen("WATCHDOG"))
        ready_at = next(i for i, m in enumerate(listener.messages) if "READY" in m)
        stopping_at = next(i for i, m in enumerate(listener.messages) if "STOPPING" in m)
        assert ready_at < stopping_at
        assert any("running" in m["STATUS"] for m in listener.seen("STATUS"))
    finally:
        listener.close()


def test_sigterm_drains_every_window_and_exits_zero(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = state / "store.db"
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        # Paced replay, so SIGTERM lands mid-stream; "block" so no sample is lost to backpressure.
        sources=[replay_source(realtime=True, speed=40.0)],
        batching={"backpressure": "block", "max_batch_size": 64, "batch_timeout_s": 2.0},
    )
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) >= 10, what="first results")
        status = run_cli("agent", "status", "--config", str(config))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "basicmotions-edge-tflite" in status.stdout
        assert agent.terminate_and_wait() == 0, agent.output()
    final = read_status(state)
    assert final is not None
    assert final["state"] == "stopped"
    stream = final["streams"]["imu"]
    assert stream["dropped"] == 0
    assert 0 < stream["pushed"] < REPLAY_ROWS  # it really was stopped mid-stream
    stored = count_results(db)
    # Every complete window of every sample the agent accepted is stored, none twice.
    assert stored == expected_windows(stream["pushed"])
    conn = sqlite3.connect(db)
    seqs = [row[0] for row in conn.execute("SELECT window_seq FROM results ORDER BY window_seq")]
    conn.close()
    assert seqs == list(range(stored))
    assert [e["kind"] for e in events(db, "agent_stopped")] == ["agent_stopped"]
    after = run_cli("agent", "status", "--config", str(config))
    assert after.returncode == 3
    assert "NOT RUNNING" in after.stdout


def test_finite_replay_stores_every_window(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        sources=[replay_source()],
        batching={"backpressure": "block"},
    )
    with AgentProcess(config, tmp_path / "agent.log", args=("--until-sources-finish",)) as agent:
        assert agent.wait() == 0, agent.output()
    assert count_results(state / "store.db") == expected_windows(REPLAY_ROWS)
    # [drift] is enabled by default and active: nothing in the default config is called inert.
    assert "not active yet" not in agent.output()
    assert events(state / "store.db", "config_inactive") == []
    out = run_cli("results", "--config", str(config), "--limit", "3", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 3
    assert {r["answered_by"] for r in rows} == {"edge"}
    assert {r["model_name"] for r in rows} == {"basicmotions-edge-tflite"}
    assert all(r["label"] in {"Standing", "Running", "Walking", "Badminton"} for r in rows)


def test_sighup_refuses_bad_config_and_applies_good_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = state / "store.db"
    path = tmp_path / "agent.toml"
    write_config(
        path, state_dir=state, sources=[replay_source("first", realtime=True, speed=20.0, loop=True)]
    )
    good_text = path.read_text()
    with AgentProcess(path, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) > 0, what="first results")

        path.write_text(good_text.replace("[batching]", "[batching]\nmax_batch_sise = 3"))
        agent.signal(signal.SIGHUP)
        wait_until(lambda: events(db, "config_rejected"), what="config_rejected event")
        before = count_results(db)
        wait_until(lambda: count_results(db) > before, what="results after a refused reload")
        status = run_cli("agent", "status", "--config", str(path), "--json")
        assert status.returncode == 0, status.stdout + status.stderr  # still healthy: old config runs
        data = json.loads(status.stdout)
        assert data["reloads"] == 0
        assert any("reload refused" in w for w in data["warnings"])
        assert any("config file is invalid" in w for w in data["warnings"])
        assert "max_batch_sise" in agent.output()

        write_config(
            path, state_dir=state, sources=[replay_source("second", realtime=True, speed=20.0, loop=True)]
        )
        agent.signal(signal.SIGHUP)
        wait_until(lambda: events(db, "config_reloaded"), what="config_reloaded event")
        wait_until(lambda: count_results(db, stream="second"), what="results of the new stream")
        wait_until(lambda: (read_status(state) or {}).get("reloads") == 1, what="status after the reload")
        data = read_status(state)
        assert data is not None
        assert data["warnings"] == []
        assert set(data["streams"]) == {"second"}
        assert agent.terminate_and_wait() == 0, agent.output()


def test_model_that_fails_to_load_keeps_agent_up_and_unhealthy(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = state / "store.db"
    broken = tmp_path / "bundle"
    shutil.copytree(demo_bundle(), broken)
    model_file = next(p for p in broken.iterdir() if p.suffix == ".tflite")
    model_file.write_bytes(b"not a model" * 10)
    path = tmp_path / "agent.toml"
    write_config(path, state_dir=state, bundle=broken, sources=[replay_source(realtime=True, speed=20.0)])
    with AgentProcess(path, tmp_path / "agent.log") as agent:
        wait_until(lambda: events(db, "model_load_failed"), what="model_load_failed event")
        wait_until(lambda: (read_status(state) or {}).get("state") == "running", what="status file")

        def model_phase() -> object:
            # The status file is rewritten periodically, so it may lag the event by one interval.
            return ((read_status(state) or {}).get("model") or {}).get("state")

        wait_until(lambda: model_phase() == "failed", what="the status file to report the failed model")
        status = run_cli("agent", "status", "--config", str(path))
        assert status.returncode == 1, status.stdout + status.stderr
        assert "integrity" in status.stdout or "failed" in status.stdout
        assert agent.proc.poll() is None

        # Repair the bundle and reload: the agent recovers without a restart.
        shutil.rmtree(broken)
        shutil.copytree(demo_bundle(), broken)
        agent.signal(signal.SIGHUP)
        wait_until(lambda: count_results(db) > 0, what="results after the repair")
        wait_until(lambda: (read_status(state) or {}).get("healthy"), what="healthy status")
        status = run_cli("agent", "status", "--config", str(path))
        assert status.returncode == 0, status.stdout + status.stderr
        assert agent.terminate_and_wait() == 0, agent.output()


def test_status_without_a_running_agent(tmp_path: Path) -> None:
    path = write_config(tmp_path / "agent.toml", state_dir=tmp_path / "state", sources=[replay_source()])
    out = run_cli("agent", "status", "--config", str(path))
    assert out.returncode == 3
    assert "no agent status file" in out.stderr
    as_json = run_cli("agent", "status", "--config", str(path), "--json")
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout)["running"] is False


def test_invalid_config_at_start_is_a_clear_error(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        sources=[replay_source()],
        batching={"max_batch_size": 0},
    )
    out = run_cli("agent", "run", "--config", str(path))
    assert out.returncode == 1
    assert "batching.max_batch_size" in out.stderr
    assert "hint:" in out.stderr
    assert "Traceback" not in out.stderr


def test_unwritable_state_dir_at_start_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    path = write_config(tmp_path / "agent.toml", state_dir=blocker / "state", sources=[replay_source()])
    out = run_cli("agent", "run", "--config", str(path))
    assert out.returncode == 1
    assert "cannot create the store" in out.stderr
    assert "Traceback" not in out.stderr
