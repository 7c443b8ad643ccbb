"""A real controller (service + uvicorn on a free port) on a real Mosquitto, and real paho devices."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import make_envelope
from edgefleet.cloud_sync.topics import MessageKind
from edgefleet.controller.auth import create_token
from edgefleet.controller.config import (
    ControllerConfig,
    HttpConfig,
    IngestConfig,
    MqttConfig,
    RetentionConfig,
)
from edgefleet.controller.service import ControllerService
from tests.support.broker import MosquittoBroker
from tests.unit.controller.db_fixtures import DB_KINDS, throwaway_database


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class RunningController:
    service: ControllerService
    base_url: str
    admin: dict[str, str]
    read: dict[str, str]

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.base_url + path, params=params, headers=self.read, timeout=10)
        response.raise_for_status()
        return response.json()


def controller_config(broker: MosquittoBroker, database: Any, **mqtt: Any) -> ControllerConfig:
    return ControllerConfig(
        mqtt=MqttConfig(host=broker.host, port=broker.port, **mqtt),
        database=database,
        http=HttpConfig(port=0, stream_interval_s=0.1),
        ingest=IngestConfig(batch_max_delay_ms=20),
        retention=RetentionConfig(interval_s=3600),
    )


def start_controller(config: ControllerConfig) -> RunningController:
    service = ControllerService(config)
    port = service.start_in_thread()
    assert service.mqtt.wait_ready(15), f"controller did not subscribe: {service.mqtt.last_error}"
    admin = create_token(service.database, "admin", "test-admin")
    read = create_token(service.database, "read", "test-read")
    return RunningController(
        service=service,
        base_url=f"http://127.0.0.1:{port}",
        admin={"Authorization": f"Bearer {admin}"},
        read={"Authorization": f"Bearer {read}"},
    )


@pytest.fixture(params=DB_KINDS)
def controller(
    request: pytest.FixtureRequest, mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[RunningController]:
    with throwaway_database(request.param, tmp_path) as (database, db_config):
        database.close()
        running = start_controller(controller_config(mosquitto, db_config))
        try:
            yield running
        finally:
            running.service.stop()


@dataclass
class Device:
    """A real paho client speaking the protocol, with the offline last will the agent sets."""

    device_id: str
    client: mqtt.Client
    received: list[mqtt.MQTTMessage] = field(default_factory=list)
    next_id: int = 1

    def publish(
        self, kind: MessageKind, body: dict[str, Any], *, message_id: int | None = None, retain: bool = False
    ) -> int:
        if message_id is None:
            message_id = 0 if kind == "status" else self.next_id
            self.next_id += kind != "status"
        envelope = make_envelope(self.device_id, kind, body, message_id=message_id)
        envelope = envelope.model_copy(update={"sent_at": time.time()})
        self.publish_raw(kind, encode_message(envelope), retain=retain)
        return message_id

    def publish_raw(self, kind: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(f"edgefleet/v1/{self.device_id}/{kind}", payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def drop_connection(self) -> None:
        """Die without DISCONNECT, so the broker publishes the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def connect_device(broker: MosquittoBroker, device_id: str) -> Device:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
    )
    will = make_envelope(device_id, "status", {"state": "offline"}, message_id=0)
    client.will_set(f"edgefleet/v1/{device_id}/status", encode_message(will), qos=1, retain=True)
    device = Device(device_id, client)
    subscribed = threading.Event()
    client.on_message = lambda c, u, message: device.received.append(message)
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(broker.host, broker.port, keepalive=5)
    client.loop_start()
    client.subscribe(f"edgefleet/v1/{device_id}/cmd", qos=1)
    assert subscribed.wait(10), "device did not subscribe"
    return device
