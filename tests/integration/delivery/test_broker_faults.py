"""End-to-end delivery against a real Mosquitto with persistence OFF: the broker killed with -9
at random moments while the device keeps storing results, the controller killed and restarted,
two controllers of one shared group with one killed mid-stream, MQTT 3.1.1. Each test ends with
the controller holding exactly the results the device stored, compared per result."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgefleet.controller.config import (
    ControllerConfig,
    DatabaseConfig,
    HttpConfig,
    IngestConfig,
    MqttConfig,
    RetentionConfig,
)
from edgefleet.controller.service import ControllerService
from tests.integration.delivery.harness import ControllerProcess, Device, assert_exactly_once, device_config
from tests.support.broker import MosquittoBroker, find_mosquitto
from tests.support.sync_fixtures import Collector, password_broker, unique_device
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed; `make test` installs it")


def in_process_controller(broker: MosquittoBroker, db: DatabaseConfig, protocol: str) -> ControllerService:
    config = ControllerConfig(
        mqtt=MqttConfig(host=broker.host, port=broker.port, protocol=protocol, keepalive_s=5),  # type: ignore[arg-type]
        database=db,
        http=HttpConfig(port=0),
        ingest=IngestConfig(batch_max_delay_ms=20, result_bucket_s=1),
        retention=RetentionConfig(interval_s=3600),
    )
    service = ControllerService(config)
    service.start_background()
    assert service.mqtt.wait_ready(15), service.mqtt.last_error
    return service


@pytest.fixture
def database(tmp_path: Path) -> DatabaseConfig:
    return DatabaseConfig(sqlite_path=tmp_path / "controller.db")


def settle(device: Device, seconds: float = 45.0) -> None:
    """Stop writing, then wait until the controller acknowledged every row the device holds."""
    device.stop_writing()
    wait_until(device.drained, seconds, what="the device's outbox to be acknowledged by the controller")


@pytest.mark.parametrize(("protocol", "rounds"), [("mqtt5", 10), ("mqtt311", 3)])
def test_broker_killed_at_random_moments_loses_nothing(
    mosquitto: MosquittoBroker, tmp_path: Path, database: DatabaseConfig, protocol: str, rounds: int
) -> None:
    rng = random.Random(11 + rounds)
    controller = in_process_controller(mosquitto, database, protocol)
    device = Device(tmp_path / "device", unique_device(), device_config(mosquitto, protocol)).start()
    try:
        wait_until(lambda: device.sync.state().controller_acks > 0, 20, what="a first controller ack")
        for _ in range(rounds):
            time.sleep(rng.uniform(0.2, 1.0))  # the device keeps writing and sending meanwhile
            mosquitto.kill()
            time.sleep(rng.uniform(0.1, 0.8))
            mosquitto.start()  # same port, empty: persistence is off
        settle(device)
        state = device.sync.state()
        assert controller.ingest.flush(10)
    finally:
        device.close()
        controller.stop()
    assert device.written > 100
    assert_exactly_once(device, database)
    assert state.resent + state.resent_no_subscribers > 0  # the faults did cost resends
    assert state.connected
    assert state.last_error is None  # cleared once the link came back


def test_controller_killed_and_restarted_loses_nothing(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    db = tmp_path / "controller.db"
    controller = ControllerProcess(tmp_path / "ctl", mosquitto, db).start()
    device = Device(tmp_path / "device", unique_device(), device_config(mosquitto)).start()
    try:
        wait_until(lambda: device.sync.state().controller_acks > 0, 20, what="a first controller ack")
        for pause in (0.7, 1.5):
            time.sleep(pause)
            controller.kill()  # whatever it had received and not committed is gone with it
            time.sleep(0.5)
            controller.start()
        settle(device)
        state = device.sync.state()
    finally:
        device.close()
        controller.stop()
    assert_exactly_once(device, DatabaseConfig(sqlite_path=db))
    assert state.resent_no_subscribers > 0  # nobody subscribed while it was down: 0x10, retried
    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgefleet",
            "controller",
            "devices",
            "--json",
            "--config",
            str(controller.config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    row = next(d for d in json.loads(listing.stdout)["devices"] if d["device_id"] == device.device_id)
    assert row["delivery"]["results_received"] == device.written
    assert row["delivery"]["missing"] == []


def test_two_controllers_in_one_group_one_killed_mid_stream(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    db = tmp_path / "controller.db"
    first = ControllerProcess(tmp_path / "ctl-a", mosquitto, db).start()
    second = ControllerProcess(tmp_path / "ctl-b", mosquitto, db).start()
    device = Device(tmp_path / "device", unique_device(), device_config(mosquitto)).start()
    try:
        wait_until(lambda: device.written > 150, 30, what="results flowing through both controllers")
        first.kill()
        time.sleep(1.5)
        settle(device)
    finally:
        device.close()
        second.stop()
        first.kill()
    assert_exactly_once(device, DatabaseConfig(sqlite_path=db))


def test_acknowledgements_pass_the_shipped_acl(
    tmp_path: Path, database: DatabaseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/mosquitto/acl.example: the controller may write any device's `ack`, a device reads
    only its own, so another device never sees (or forges) them."""
    device, other = unique_device(), unique_device()
    users = {device: "dev-pass", other: "other-pass", "controller": "ctl-pass"}
    monkeypatch.setenv("DELIVERY_TEST_MQTT_PASSWORD", "ctl-pass")
    with password_broker(tmp_path / "acl-broker", users) as broker:
        config = ControllerConfig(
            mqtt=MqttConfig(
                host=broker.host,
                port=broker.port,
                username="controller",
                password_env="DELIVERY_TEST_MQTT_PASSWORD",
            ),
            database=database,
            http=HttpConfig(port=0),
            ingest=IngestConfig(batch_max_delay_ms=20, result_bucket_s=1),
            retention=RetentionConfig(interval_s=3600),
        )
        controller = ControllerService(config)
        controller.start_background()
        assert controller.mqtt.wait_ready(15), controller.mqtt.last_error
        with Collector(broker, [f"edgefleet/v1/{device}/ack"], username=other, password="other-pass") as spy:
            sync = device_config(broker, username=device, password="dev-pass")
            dev = Device(tmp_path / "device", device, sync).start()
            try:
                wait_until(lambda: dev.written > 60, 20, what="results written")
                settle(dev)
            finally:
                dev.close()
                controller.stop()
            assert spy.envelopes == []
        assert_exactly_once(dev, database)
