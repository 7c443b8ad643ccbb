"""`edgefleet agent run` with ``[fallback]`` whose cloud answers come too late: a real Mosquitto, a
real (slow) inference worker and a real controller. The edge answers are stored at once, flagged;
the late cloud answers land on the same stored results and reach the controller, each once."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.store.rows import SELECT_RESULT_READ, result_dict
from tests.e2e.agent.agentproc import AgentProcess, count_results, read_status
from tests.integration.controller.conftest import controller_config, start_controller
from tests.integration.controller.inference.test_inference_worker import start_pool
from tests.support.broker import MosquittoBroker
from tests.support.waiting import wait_until
from tests.support.watch_fallback import watch_fallback_agent
from tests.unit.controller.db_fixtures import throwaway_database

pytestmark = pytest.mark.e2e

DEVICE = "watch-late"


def rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [
            (r["id"], r["window_seq"], r["answered_by"], r["fallback_reason"], r["fallback_outcome"],
             r["label"], r["cloud_label"], r["late"])
            for r in map(result_dict, conn.execute(f"{SELECT_RESULT_READ} ORDER BY results.id"))
        ]  # fmt: skip
    finally:
        conn.close()


def test_late_cloud_answers_improve_the_stored_results_and_reach_the_controller(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    # The worker waits 1.5 s for a fuller batch; the agent waits 300 ms: every answer is late.
    pool = start_pool(mosquitto, max_wait_ms=1500.0, max_batch_size=256)
    config, windows = watch_fallback_agent(
        tmp_path, host=mosquitto.host, port=mosquitto.port, device_id=DEVICE, latency_slo_ms=300, recordings=1
    )
    state = tmp_path / "state"
    db = state / "store.db"
    with throwaway_database("sqlite", tmp_path) as (database, db_config):
        database.close()
        controller = start_controller(controller_config(mosquitto, db_config))
        try:
            with AgentProcess(config, tmp_path / "agent.log") as agent:
                wait_until(lambda: count_results(db) >= windows, timeout=120, what=f"{windows} results")
                timed_out = [r for r in rows(db) if r[2] == "edge" and r[3] is not None]
                assert timed_out, "no cloud answer came too late"
                wait_until(
                    lambda: all(r[7] for r in rows(db) if r[2] == "edge" and r[3] is not None),
                    timeout=60,
                    what="a late answer on every unsure window",
                )
                wait_until(
                    lambda: (
                        len(controller.service.database.late_answers(DEVICE, limit=10_000)) == len(timed_out)
                    ),
                    timeout=60,
                    what="the late answers at the controller",
                )
                assert agent.proc.poll() is None, agent.output()
                final = rows(db)

                def deferred_status() -> dict[str, Any]:
                    status = read_status(state) or {}
                    section: dict[str, Any] = status.get("fallback_deferred") or {}
                    return section

                wait_until(
                    lambda: deferred_status().get("counts", {}).get("late", 0) >= len(timed_out),
                    timeout=30,
                    what="the status file to count the late answers",
                )
                section = deferred_status()
                assert section["enabled"] is True
                assert section["counts"]["kept"] == len(timed_out)
                assert section["max_bytes"] == 1_048_576
        finally:
            late_at_controller = controller.service.database.late_answers(DEVICE, limit=10_000)
            controller.service.stop()
            pool.stop()
    assert len(final) == windows
    assert sorted(r[1] for r in final) == list(range(windows))  # every window stored once
    late = [r for r in final if r[2] == "edge" and r[3] is not None]
    assert {r[3] for r in late} == {"low_confidence:timeout"}  # the real-time decision stayed on the edge
    assert {r[4] for r in late} == {"late"}
    assert all(r[6] for r in late)
    assert {r[4] for r in final if r[3] is None} == {"edge"}
    # A cloud answer that came in time (a batch released early) is the result itself, not late.
    assert {(r[4], r[7]) for r in final if r[2] == "cloud"} <= {("cloud", 0)}
    assert {a.result_id: a.cloud_label for a in late_at_controller} == {r[0]: r[6] for r in late}
