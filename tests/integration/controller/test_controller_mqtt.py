"""The controller against a real Mosquitto: registry, last will, de-dup, malformed input, commands."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.protocol import CommandBody
from edgefleet.controller.config import DatabaseConfig
from tests.integration.controller.conftest import (
    RunningController,
    connect_device,
    controller_config,
    start_controller,
    wait_for,
)
from tests.support.broker import MosquittoBroker
from tests.unit.controller.db_fixtures import DB_KINDS, throwaway_database

pytestmark = pytest.mark.integration


def results_body(n: int, *, cloud: int = 0) -> dict[str, Any]:
    now = time.time()
    return {
        "results": [
            {
                "stream": "imu",
                "window_start": now - 2,
                "window_end": now - 1,
                "model_name": "har",
                "model_version": "1.0.0",
                "label": "walking" if i % 2 else "standing",
                "latency_ms": 5.0 + i,
                "answered_by": "cloud" if i < cloud else "edge",
            }
            for i in range(n)
        ]
    }


class StreamReader:
    """Reads /api/stream in a thread and keeps every `fleet` event."""

    def __init__(self, controller: RunningController, *, last_device: str) -> None:
        self.last_device = last_device
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(controller,), daemon=True)
        self._thread.start()
        assert self.ready.wait(10), "the event stream did not start"

    def _read(self, controller: RunningController) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", controller.base_url + "/api/stream", headers=controller.read) as response,
        ):
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    if event == "hello":
                        self.ready.set()
                elif line.startswith("data: ") and event == "fleet":
                    self.events.append(json.loads(line[6:]))
                    if self.status_of(self.last_device) is False:
                        return  # the last thing the test waits for: hang up
                if self._stop.is_set():
                    return

    def status_of(self, device_id: str) -> bool | None:
        for event in reversed(self.events):
            if device_id in event["status"]:
                return bool(event["status"][device_id])
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)


def test_devices_appear_dedup_malformed_and_last_will(
    controller: RunningController, mosquitto: MosquittoBroker
) -> None:
    stream = StreamReader(controller, last_device="dev-a1")
    device = connect_device(mosquitto, "dev-a1")
    try:
        device.publish(
            "status",
            {"state": "online", "agent_version": "0.1.0", "model_name": "har", "model_version": "1.0.0"},
            retain=True,
        )
        device.publish("telemetry", {"samples": [{"ts": time.time(), "name": "cpu_percent", "value": 42.0}]})
        results_id = device.publish("results", results_body(10, cloud=2))
        device.publish("results", results_body(10, cloud=2), message_id=results_id)  # a resend: same id
        device.publish_raw("results", b"EF\x01\x00garbage")
        device.publish_raw("telemetry", b'{"json": true}')

        def ingested() -> bool:
            stats = controller.get("/api/ingest/stats")
            return bool(stats["stored"] >= 3 and stats["duplicates"] >= 1 and stats["malformed"] >= 2)

        wait_for(ingested, what="ingest of 3 messages, 1 duplicate, 2 malformed")
        stats = controller.get("/api/ingest/stats")
        assert (stats["stored"], stats["duplicates"], stats["malformed"]) == (3, 1, 2)
        detail = controller.get("/api/devices/dev-a1")
        assert detail["device"]["online"] is True
        assert detail["device"]["agent_version"] == "0.1.0"
        assert detail["latest_telemetry"] == {"cpu_percent": 42.0}
        summary = controller.get("/api/devices/dev-a1/results/summary")
        assert (summary["total"], summary["cloud_count"]) == (10, 2)  # the resend was not counted twice
        assert summary["fallback_share"] == pytest.approx(0.2)
        wait_for(lambda: stream.status_of("dev-a1") is True, what="the stream to report dev-a1 online")

        device.drop_connection()
        wait_for(
            lambda: controller.get("/api/devices/dev-a1")["device"]["online"] is False,
            timeout=20,
            what="the last will to mark dev-a1 offline",
        )
        wait_for(lambda: stream.status_of("dev-a1") is False, what="the stream to report dev-a1 offline")
        fleet = controller.get("/api/fleet/summary")
        assert (fleet["devices_total"], fleet["online"], fleet["offline"]) == (1, 0, 1)
        metrics = httpx.get(controller.base_url + "/metrics", headers=controller.read, timeout=10).text
        assert 'edgefleet_controller_devices{state="offline"} 1.0' in metrics
        assert "edgefleet_controller_messages_duplicates_total 1.0" in metrics
        assert 'edgefleet_controller_messages_malformed_total{reason="malformed"}' in metrics
    finally:
        stream.close()
        device.close()


def test_commands_reach_the_device_and_acks_come_back(
    controller: RunningController, mosquitto: MosquittoBroker
) -> None:
    device = connect_device(mosquitto, "dev-c1")
    try:
        device.publish("status", {"state": "online"}, retain=True)
        wait_for(lambda: controller.service.database.get_device("dev-c1"), what="dev-c1 to register")
        response = httpx.post(
            controller.base_url + "/api/devices/dev-c1/commands",
            json={"name": "set_config", "args": {"key": "batching.max_batch_size", "value": 16}},
            headers=controller.admin,
            timeout=10,
        )
        assert response.status_code == 202, response.text
        record = response.json()
        assert record["status"] == "sent"
        message = wait_for(
            lambda: device.received and device.received[0], what="the command on the device topic"
        )
        assert message.topic == "edgefleet/v1/dev-c1/cmd"
        assert message.qos == 1
        envelope = decode_message(message.topic, message.payload)
        assert isinstance(envelope.body, CommandBody)
        assert (envelope.body.command_id, envelope.body.command, envelope.body.args) == (
            record["command_id"],
            "set_config",
            {"key": "batching.max_batch_size", "value": 16},
        )
        device.publish(
            "events",
            {
                "events": [
                    {
                        "ts": time.time(),
                        "kind": "command.acked",
                        "message": "set_config done",
                        "data": {"command_id": record["command_id"]},
                    }
                ]
            },
        )
        wait_for(
            lambda: controller.get(f"/api/commands/{record['command_id']}")["status"] == "acked",
            what="the command to be acked",
        )
    finally:
        device.close()


@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
def test_a_controller_started_later_sees_retained_status(
    mosquitto: MosquittoBroker, tmp_path: Path, protocol: str
) -> None:
    device = connect_device(mosquitto, "dev-r1")
    device.publish("status", {"state": "online", "model_version": "2.0.0"}, retain=True)
    running = start_controller(
        controller_config(mosquitto, DatabaseConfig(sqlite_path=tmp_path / "c.db"), protocol=protocol)
    )
    try:
        detail = wait_for(
            lambda: running.service.database.get_device("dev-r1"),
            what="the retained status to register dev-r1",
        )
        assert (detail.online, detail.model_version) == (True, "2.0.0")
        device.publish(
            "telemetry", {"samples": [{"ts": time.time(), "name": "temperature_c", "value": 50.0}]}
        )
        wait_for(lambda: running.get("/api/ingest/stats")["stored"] >= 2, what="telemetry ingest")
    finally:
        device.close()
        running.service.stop()


@pytest.mark.parametrize("db_kind", DB_KINDS)
def test_two_controllers_split_the_load_through_a_shared_subscription(
    mosquitto: MosquittoBroker, tmp_path: Path, db_kind: str
) -> None:
    with throwaway_database(db_kind, tmp_path) as (database, db_config):
        database.close()
        run_two_controllers(mosquitto, db_config)


def run_two_controllers(mosquitto: MosquittoBroker, database: DatabaseConfig) -> None:
    first = start_controller(controller_config(mosquitto, database))
    second = start_controller(controller_config(mosquitto, database))
    device = connect_device(mosquitto, "dev-s1")
    try:
        for _ in range(100):
            device.publish(
                "telemetry", {"samples": [{"ts": time.time(), "name": "cpu_percent", "value": 1.0}]}
            )
        wait_for(
            lambda: first.service.ingest.stats.stored + second.service.ingest.stats.stored >= 100,
            what="both controllers to store 100 messages between them",
        )
        assert first.service.ingest.stats.stored > 0
        assert second.service.ingest.stats.stored > 0
        assert first.service.ingest.stats.duplicates + second.service.ingest.stats.duplicates == 0
        series = first.get("/api/devices/dev-s1/telemetry", metric="cpu_percent", since=-600)
        assert len(series["points"]) == 100
    finally:
        device.close()
        first.service.stop()
        second.service.stop()


def test_command_without_broker_is_503_and_recorded_failed(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    running = start_controller(controller_config(mosquitto, DatabaseConfig(sqlite_path=tmp_path / "c.db")))
    device = connect_device(mosquitto, "dev-f1")
    try:
        device.publish("status", {"state": "online"}, retain=True)
        wait_for(lambda: running.service.database.get_device("dev-f1"), what="dev-f1 to register")
        mosquitto.stop()
        wait_for(
            lambda: not running.service.mqtt.connected, what="the controller to notice the broker is gone"
        )
        response = httpx.post(
            running.base_url + "/api/devices/dev-f1/commands",
            json={"name": "restart_pipeline"},
            headers=running.admin,
            timeout=10,
        )
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "broker_unavailable"
        assert body["command"]["status"] == "failed"
        health = httpx.get(running.base_url + "/healthz", timeout=5).json()
        assert (health["status"], health["mqtt_connected"]) == ("degraded", False)
    finally:
        device.client.loop_stop()
        running.service.stop()
