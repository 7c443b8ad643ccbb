"""The OTA transfer end to end: the real controller (its OTA host behind the controller's MQTT
connection, the HTTP routes) and the real ``edgefleet agent run`` process. The agent keeps serving
its model throughout: refused offers (a downgrade, another device's, a malformed one) and a
finished download change nothing it serves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import OtaChunkBody, make_envelope
from tests.e2e.agent.agentproc import (
    AgentProcess,
    count_results,
    events,
    read_status,
    replay_source,
    run_cli,
    write_config,
)
from tests.integration.controller.conftest import RunningController, controller_config, start_controller
from tests.support.broker import MosquittoBroker
from tests.support.ota import versioned_bundle
from tests.support.waiting import wait_until
from tests.unit.controller.db_fixtures import throwaway_database

pytestmark = pytest.mark.e2e

DEVICE = "ota-device"


@pytest.fixture
def controller(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[RunningController]:
    with throwaway_database("sqlite", tmp_path) as (database, db_config):
        database.close()
        running = start_controller(controller_config(mosquitto, db_config))
        try:
            yield running
        finally:
            running.service.stop()


def ota_state(controller: RunningController, offer_id: str) -> dict[str, Any] | None:
    for state in controller.get(f"/api/devices/{DEVICE}/ota"):
        if state["offer_id"] == offer_id:
            return dict(state)
    return None


def test_offers_are_refused_or_resumed_across_a_kill_while_the_agent_keeps_serving(
    mosquitto: MosquittoBroker, controller: RunningController, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        sources=[replay_source(realtime=True, speed=2.0)],
        sync={"enabled": True, "host": mosquitto.host, "port": mosquitto.port, "reconnect_max_s": 1.0},
        device_id=DEVICE,
    )
    db = tmp_path / "state" / "store.db"
    newer, older = versioned_bundle(tmp_path, "1.1.0"), versioned_bundle(tmp_path, "0.9.0")
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: controller.service.database.get_device(DEVICE), what="the agent to register")
        wait_until(lambda: count_results(db) > 0, what="the first results")
        host = controller.service.ota
        host.chunk_bytes = 4096  # several chunks for the demo bundle
        registered = []
        for tar in (newer, older):
            reply = httpx.post(
                f"{controller.base_url}/api/ota/bundles", json={"path": str(tar)}, headers=controller.admin
            )
            assert reply.status_code == 201, reply.text
            registered.append(
                host.database.get_ota_bundle("basicmotions-edge-tflite", reply.json()["version"])
            )
        assert all(registered)

        downgrade = host.offer(DEVICE, registered[1])  # type: ignore[arg-type]
        refused = wait_until(
            lambda: (s := ota_state(controller, downgrade.offer_id)) and s["state"] == "refused" and s,
            what="the downgrade refused",
        )
        assert refused["detail"].startswith("downgrade: "), refused
        # An offer naming another device, and bytes that are no offer at all, on this device's topic.
        foreign = downgrade.model_copy(update={"offer_id": "foreign-1", "device_id": "someone-else"})
        topic = f"edgefleet/v1/{DEVICE}/ota/offer"
        mqtt = controller.service.mqtt
        assert mqtt.publish(topic, encode_message(make_envelope(DEVICE, "ota/offer", foreign))) is None
        assert mqtt.publish(topic, b"EF\x01\x00not msgpack") is None
        wrong = wait_until(
            lambda: (s := ota_state(controller, "foreign-1")) and s["state"] == "refused" and s,
            what="the foreign offer refused",
        )
        assert wrong["detail"].startswith("wrong_device: "), wrong
        wait_until(lambda: events(db, "sync.downlink_refused"), what="the malformed offer refused")

        # The host grants one window of 3 chunks, then nothing: the agent is killed mid-transfer.
        host.max_window, host.chunks_per_s = 3, 1e-6
        offer = host.offer(DEVICE, registered[0])  # type: ignore[arg-type]
        received = tmp_path / "state" / "ota" / "active" / "received.json"
        wait_until(lambda: received.exists() and len(json.loads(received.read_text())) == 3, what="3 chunks")
        agent.kill()
    on_disk = {int(i) for i in json.loads(received.read_text())}
    # Which chunks the host sends from now on. Requests the killed agent sent just before it died
    # can still be served (they were in flight), so the count of chunks sent is no measure; the
    # indices are: none of those already on disk may be sent again.
    served_later: list[int] = []
    publish = host.publish

    def recording_publish(topic: str, payload: bytes) -> bool:
        body = decode_message(topic, payload).body
        if isinstance(body, OtaChunkBody):
            served_later.append(body.index)
        return publish(topic, payload)

    host.publish = recording_publish
    host.max_window, host.chunks_per_s = 32, 1000.0
    with AgentProcess(config, tmp_path / "agent-2.log") as agent:
        before = count_results(db)
        # The download resumes, then the agent's installer validates and hot-swaps the new version.
        active = wait_until(
            lambda: (
                (s := ota_state(controller, offer.offer_id)) and s["state"] in {"probation", "done"} and s
            ),
            what="the bundle downloaded after the restart and activated",
        )
        assert len(on_disk) == 3
        assert not on_disk & set(served_later), (on_disk, served_later)  # not asked for again
        assert set(served_later) == set(range(offer.chunk_count)) - on_disk
        assert active["bundle_version"] == "1.1.0", active
        archive = tmp_path / "state" / "ota" / "active" / "bundle.tar"
        assert archive.read_bytes() == newer.read_bytes()
        status = wait_until(
            lambda: (s := read_status(tmp_path / "state")) and s["model"].get("version") == "1.1.0" and s,
            what="the new model serving",
        )
        assert status.get("ota"), status
        before = count_results(db)
        wait_until(lambda: count_results(db) > before, what="results after the swap")
        shown = run_cli("agent", "status", "--config", str(config))
        assert "basicmotions-edge-tflite 1.1.0" in shown.stdout, shown.stdout
        assert agent.terminate_and_wait() == 0, agent.output()
