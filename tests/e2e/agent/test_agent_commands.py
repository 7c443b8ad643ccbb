"""Commands end to end: real controller + real Mosquitto + the real ``edgefleet agent run`` process.

Each command comes back with the device's outcome (done, failed with the reason, expired) in the
controller's command record, which is what the dashboard's command list shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.controller.commands import CommandService
from edgefleet.controller.schemas import CommandRequest
from tests.e2e.agent.agentproc import AgentProcess, read_status, replay_source, write_config
from tests.integration.controller.conftest import RunningController, controller_config, start_controller
from tests.support.broker import MosquittoBroker
from tests.support.waiting import wait_until
from tests.unit.controller.db_fixtures import throwaway_database

pytestmark = pytest.mark.e2e

DEVICE = "cmd-device"


@pytest.fixture
def controller(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[RunningController]:
    with throwaway_database("sqlite", tmp_path) as (database, db_config):
        database.close()
        running = start_controller(controller_config(mosquitto, db_config))
        try:
            yield running
        finally:
            running.service.stop()


@pytest.fixture
def agent(
    mosquitto: MosquittoBroker, controller: RunningController, tmp_path: Path
) -> Iterator[AgentProcess]:
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        # Slow enough replay that the agent keeps serving for the whole test.
        sources=[replay_source(realtime=True, speed=2.0)],
        sync={"enabled": True, "host": mosquitto.host, "port": mosquitto.port, "reconnect_max_s": 1.0},
        device_id=DEVICE,
    )
    with AgentProcess(config, tmp_path / "agent.log") as process:
        wait_until(
            lambda: controller.service.database.get_device(DEVICE),
            what="the agent to register with the controller",
        )
        yield process
        assert process.terminate_and_wait() == 0, process.output()


def send(controller: RunningController, name: str, args: dict[str, Any] | None = None) -> str:
    response = httpx.post(
        f"{controller.base_url}/api/devices/{DEVICE}/commands",
        json={"name": name, "args": args or {}},
        headers=controller.admin,
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["command_id"])


def final(controller: RunningController, command_id: str, agent: AgentProcess) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        record: dict[str, Any] = controller.get(f"/api/commands/{command_id}")
        return record if record["status"] not in ("pending", "sent", "acked") else None

    try:
        return dict(wait_until(settled, timeout=60, what=f"an outcome for command {command_id}"))
    except AssertionError:
        print(agent.output())
        raise


def test_set_config_is_validated_applied_and_kept(
    agent: AgentProcess, controller: RunningController, tmp_path: Path
) -> None:
    good = final(
        controller, send(controller, "set_config", {"key": "batching.max_batch_size", "value": 4}), agent
    )
    assert good["status"] == "done", good
    overrides = json.loads((tmp_path / "state" / "config_overrides.json").read_text())
    assert overrides == {"batching.max_batch_size": 4}
    status = wait_until(lambda: (s := read_status(tmp_path / "state")) and s.get("reloads", 0) >= 1 and s)
    assert status["reloads"] >= 1

    bad = final(
        controller, send(controller, "set_config", {"key": "batching.max_batch_size", "value": -3}), agent
    )
    assert bad["status"] == "failed"
    assert "batching.max_batch_size" in bad["detail"], bad
    assert "greater than" in bad["detail"], bad

    unknown_key = final(
        controller, send(controller, "set_config", {"key": "batching.no_such_key", "value": 1}), agent
    )
    assert unknown_key["status"] == "failed"
    assert "batching.no_such_key" in unknown_key["detail"], unknown_key

    guarded = final(controller, send(controller, "set_config", {"key": "sync.port", "value": 1}), agent)
    assert guarded["status"] == "failed"
    assert "refuses 'sync.port'" in guarded["detail"], guarded

    live = final(
        controller, send(controller, "set_config", {"key": "logging.level", "value": "DEBUG"}), agent
    )
    assert live["status"] == "done", live
    assert "applied live" in live["detail"], live

    # Refused settings were not saved; accepted ones were.
    overrides = json.loads((tmp_path / "state" / "config_overrides.json").read_text())
    assert overrides == {"batching.max_batch_size": 4, "logging.level": "DEBUG"}


def test_restart_ping_and_expired_commands(agent: AgentProcess, controller: RunningController) -> None:
    restart = final(controller, send(controller, "restart_pipeline"), agent)
    assert restart["status"] == "done", restart
    assert "reloaded" in restart["detail"], restart
    ping = final(controller, send(controller, "ping"), agent)
    assert ping["status"] == "done", ping

    # A command whose expires_at passed before it arrived: same controller, clock an hour behind.
    service = controller.service
    late = CommandService(service.database, service.commands.publisher, clock=lambda: time.time() - 7300)
    record = late.send(DEVICE, CommandRequest(name="restart_pipeline"), created_by="test")
    expired = final(controller, record.command_id, agent)
    assert expired["status"] == "expired", expired
    assert "not run" in expired["detail"], expired
    events = controller.get(f"/api/devices/{DEVICE}/events", limit=200)
    kinds = [e["kind"] for e in events] if isinstance(events, list) else [e["kind"] for e in events["events"]]
    assert "command.expired" in kinds
    assert "command.acked" in kinds
    assert "command.done" in kinds
