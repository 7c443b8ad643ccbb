"""`edgefleet agent run` with ``[fallback]`` enabled, a real Mosquitto and a real inference worker:
held-out watch recordings through the int8 edge model; unsure windows are answered by the cloud
model and stored as such, the others by the edge; nothing is stored twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.agent.agentproc import AgentProcess, count_results
from tests.integration.controller.inference.test_inference_worker import start_pool
from tests.support.broker import MosquittoBroker
from tests.support.waiting import wait_until
from tests.support.watch_fallback import watch_fallback_agent

pytestmark = pytest.mark.e2e


def stored(db: Path) -> list[tuple[str, str | None, str | None, int | None]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT answered_by, fallback_reason, model_name, window_seq FROM results"
        ).fetchall()
    finally:
        conn.close()
    return [(str(a), r, m, s) for a, r, m, s in rows]


def test_unsure_windows_are_answered_by_the_cloud_worker(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    pool = start_pool(mosquitto, max_wait_ms=2.0)
    config, windows = watch_fallback_agent(
        tmp_path, host=mosquitto.host, port=mosquitto.port, device_id="watch-e2e", latency_slo_ms=5000
    )
    state = tmp_path / "state"
    db = state / "store.db"
    try:
        with AgentProcess(config, tmp_path / "agent.log") as agent:
            wait_until(lambda: count_results(db) >= windows, timeout=120, what=f"{windows} results")
            rows = stored(db)
            assert agent.proc.poll() is None, agent.output()
    finally:
        stats = pool.stats()
        pool.stop()
    assert len(rows) == windows
    assert sorted(s for *_, s in rows if s is not None) == list(range(windows))  # each window once
    cloud = [r for r in rows if r[0] == "cloud"]
    edge = [r for r in rows if r[0] == "edge"]
    assert cloud, "no window went to the cloud"
    assert edge, "every window went to the cloud"
    assert {r[1] for r in cloud} == {"low_confidence"}
    assert {r[2] for r in cloud} == {"watch-cloud"}
    assert {r[1] for r in edge} == {None}  # answered in time: no edge answer was flagged
    assert stats.answered == len(cloud)
