"""``rollback_model`` end to end: real controller + Mosquitto + the real agent after an OTA install."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.runtime.bundle_signing import generate_keys
from tests.e2e.agent.agentproc import AgentProcess, count_results, replay_source, run_cli, write_config
from tests.e2e.agent.test_agent_commands import final, send
from tests.e2e.agent.test_agent_ota_activation import rows
from tests.integration.controller.conftest import RunningController, controller_config, start_controller
from tests.support.broker import MosquittoBroker
from tests.support.ota_bundles import make_version
from tests.support.waiting import wait_until
from tests.unit.controller.db_fixtures import throwaway_database

pytestmark = pytest.mark.e2e

DEVICE = "cmd-device"  # the name tests.e2e.agent.test_agent_commands.send addresses


@pytest.fixture
def controller(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[RunningController]:
    with throwaway_database("sqlite", tmp_path) as (database, db_config):
        database.close()
        running = start_controller(controller_config(mosquitto, db_config))
        try:
            yield running
        finally:
            running.service.stop()


def test_rollback_model_command(
    mosquitto: MosquittoBroker, controller: RunningController, tmp_path: Path
) -> None:
    private, public = generate_keys(tmp_path / "keys")
    v1 = make_version(tmp_path / "v1", "1.0.0", private)
    v2 = make_version(tmp_path / "v2", "1.1.0", private)
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        sources=[replay_source(realtime=True, speed=40.0, loop=True)],
        bundle=v1,
        sync={"enabled": True, "host": mosquitto.host, "port": mosquitto.port, "reconnect_max_s": 1.0},
        device_id=DEVICE,
    )
    ota = {"trusted_keys": [str(public)], "probation_s": 1.0, "probation_min_windows": 10}
    config.write_text(
        config.read_text() + "\n[ota]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in ota.items()) + "\n"
    )
    db = tmp_path / "state" / "store.db"
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: controller.service.database.get_device(DEVICE), what="the agent to register")
        wait_until(lambda: count_results(db) >= 10, what="results from 1.0.0")
        installed = run_cli("ota", "install", str(v2), "--config", str(config), timeout=120)
        assert installed.returncode == 0, installed.stdout + installed.stderr

        back = final(controller, send(controller, "rollback_model"), agent)
        assert back["status"] == "done", back
        last_new = rows(db, "SELECT coalesce(max(id), 0) FROM results WHERE model_version = '1.1.0'")[0][0]
        wait_until(
            lambda: (
                rows(db, f"SELECT count(*) FROM results WHERE model_version = '1.0.0' AND id > {last_new}")[
                    0
                ][0]
                >= 10
            ),
            what="1.0.0 serving again",
        )
        # Nothing older than the configured bundle to go back to: refused with the reason.
        again = final(controller, send(controller, "rollback_model"), agent)
        assert again["status"] == "failed", again
        assert "the configured bundle is active" in again["detail"], again
        assert agent.terminate_and_wait() == 0, agent.output()
