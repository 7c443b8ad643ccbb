"""The real agent process and the store's commit policy: results held for ``store.commit_interval_s``
are committed by SIGTERM and by reload; the status file is written as soon as the model is
loaded; `store stats` and `agent status` report the running agent's own device writes."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent.agentproc import AgentProcess, count_results, read_status, run_cli, write_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

# 50 samples/s with the demo model's hop of 10: 5 windows/s, the rate of a slow sensor.
SLOW_SOURCE: dict[str, object] = {"type": "synthetic", "name": "imu", "channels": 6, "rate_hz": 50.0}


def _config(tmp_path: Path, *, commit_interval_s: float, metrics_interval_s: float) -> Path:
    return write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        sources=[SLOW_SOURCE],
        store={"commit_interval_s": commit_interval_s},
        health={"metrics_interval_s": metrics_interval_s},
    )


def _inferred(state_dir: Path) -> int:
    status = read_status(state_dir) or {}
    return int((status.get("totals") or {}).get("windows_inferred") or 0)


def test_sigterm_commits_the_results_held_for_the_commit_interval(tmp_path: Path) -> None:
    config = _config(tmp_path, commit_interval_s=60.0, metrics_interval_s=0.5)
    state, db = tmp_path / "state", tmp_path / "state" / "store.db"
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) > 0, timeout=60, what="the first result committed at once")
        first = count_results(db)
        # Windows keep coming and are inferred, but wait in the writer for the 60 s interval.
        wait_until(lambda: _inferred(state) >= first + 10, timeout=60, what="ten more windows inferred")
        held = count_results(db)
        assert held < _inferred(state), "results should be waiting for the commit interval"
        assert agent.terminate_and_wait(60) == 0, agent.output()
    final = read_status(state)
    assert final is not None
    assert final["state"] == "stopped"
    inferred = final["totals"]["windows_inferred"]
    assert inferred >= first + 10
    assert count_results(db) == inferred == final["totals"]["results_stored"]


def test_reload_commits_the_held_results(tmp_path: Path) -> None:
    config = _config(tmp_path, commit_interval_s=60.0, metrics_interval_s=0.5)
    state, db = tmp_path / "state", tmp_path / "state" / "store.db"
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) > 0, timeout=60, what="the first result")
        first = count_results(db)
        wait_until(lambda: _inferred(state) >= first + 10, timeout=60, what="ten more windows inferred")
        before_reload = _inferred(state)
        agent.signal(signal.SIGHUP)
        wait_until(
            lambda: (read_status(state) or {}).get("reloads") == 1, timeout=60, what="the reload to finish"
        )
        # The old pipeline's writer committed everything it held before the new one started.
        assert count_results(db) >= before_reload
        assert agent.terminate_and_wait(60) == 0, agent.output()


def test_status_is_healthy_once_the_model_is_loaded_not_only_after_a_metrics_interval(
    tmp_path: Path,
) -> None:
    # A metrics interval far longer than the test: before the fix the status file said
    # "model not loaded: loading" (unhealthy) until the first health sample.
    config = _config(tmp_path, commit_interval_s=1.0, metrics_interval_s=3600.0)
    state, db = tmp_path / "state", tmp_path / "state" / "store.db"
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) > 0, timeout=60, what="the first result")

        def healthy() -> dict[str, Any] | None:
            status = read_status(state)
            return status if status and status.get("healthy") and status["model"]["loaded"] else None

        status = wait_until(healthy, timeout=30, what="the status file to say healthy")
        assert status["problems"] == []
        result = run_cli("agent", "status", "--config", str(config))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "model not loaded" not in result.stdout
        assert agent.terminate_and_wait(60) == 0, agent.output()


def test_store_stats_and_agent_status_report_the_running_agents_writes(tmp_path: Path) -> None:
    config = _config(tmp_path, commit_interval_s=1.0, metrics_interval_s=0.5)
    state, db = tmp_path / "state", tmp_path / "state" / "store.db"
    with AgentProcess(config, tmp_path / "agent.log") as agent:

        def sampled() -> bool:
            facts = (read_status(state) or {}).get("store") or {}
            return facts.get("process_bytes_written_per_hour") is not None and count_results(db) > 0

        wait_until(sampled, timeout=60, what="the agent to sample its own writes")
        stats = run_cli("store", "stats", "--config", str(config), "--json")
        assert stats.returncode == 0, stats.stderr
        body = json.loads(stats.stdout)
        assert body["running_agent"]["pid"] == agent.pid
        assert body["bytes_written_source"] == "agent-process-io"
        assert isinstance(body["bytes_written_per_hour"], float)
        assert body["bytes_written_per_hour"] >= 0.0
        text = run_cli("store", "stats", "--db", str(db))
        assert text.returncode == 0, text.stderr
        assert f"device writes by the running agent (pid {agent.pid})" in text.stdout
        status = run_cli("agent", "status", "--config", str(config))
        assert "to the device by the agent process" in status.stdout, status.stdout
        assert agent.terminate_and_wait(60) == 0, agent.output()
    stopped = run_cli("store", "stats", "--db", str(db), "--json")
    assert stopped.returncode == 0, stopped.stderr
    body = json.loads(stopped.stdout)
    assert body["running_agent"] is None
    assert body["bytes_written_per_hour"] is None
    assert body["bytes_written_source"] == "no-running-agent"
