"""The agent and the controller on the shipped broker configuration, end to end.

The secure layout must not cost function: the agent's results reach the controller (which reads
under ``devices/edgefleet/v1``), the controller's end-to-end acknowledgements reach the agent
(which only then forgets its outbox rows), a controller command reaches the agent and is
handled, and the agent's "offline" last will reaches the controller when it dies.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.store import Store
from edgefleet.cloud_sync import SyncConfig, SyncService, TlsConfig, make_envelope
from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import Envelope
from edgefleet.cloud_sync.topics import device_topic
from edgefleet.controller.acks import AckPublisher, AckRef
from edgefleet.controller.config import MqttConfig, MqttTlsConfig
from edgefleet.controller.mqtt import ControllerMqtt
from tests.support.shipped_broker import CONTROLLERS, DEVICE_PREFIX, Client, ShippedBroker
from tests.support.sync_fixtures import fill_results, open_store, unique_device
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "device" / "store.db")
    yield s
    s.close()


def test_results_up_and_commands_down_through_the_shipped_config(broker: ShippedBroker, store: Store) -> None:
    device = unique_device()
    cert, key = broker.device(device)
    os.environ["EDGEFLEET_TEST_LINK_PASSWORD"] = CONTROLLERS["controller-2"]
    envelopes: list[Envelope] = []
    acks: AckPublisher | None = None

    def received(topic: str, payload: bytes, at: float) -> None:
        envelope = decode_message(topic, payload, prefix=DEVICE_PREFIX)
        envelopes.append(envelope)
        if acks is not None and envelope.message_id:
            # What the real controller does once it has stored a message.
            acks.add([AckRef(envelope.device_id, envelope.message_id, envelope.part, envelope.parts)])

    controller = ControllerMqtt(
        MqttConfig(
            host="localhost",
            port=broker.controller_port,
            username="controller-2",
            password_env="EDGEFLEET_TEST_LINK_PASSWORD",
            topic_prefix=DEVICE_PREFIX,
            tls=MqttTlsConfig(enabled=True, ca_file=broker.ca_cert),
        ),
        # Every kind the agent sends (its sync metrics travel as telemetry): a kind nobody
        # subscribes to is answered 0x10 by the broker and stays in the outbox, resent.
        ["results", "telemetry", "events", "status"],
        received,
    )
    acks = AckPublisher(controller.publish_nowait, prefix=DEVICE_PREFIX)
    fill_results(store, 40, batch=10)
    handled: list[Envelope] = []
    config = SyncConfig.model_validate(
        {
            "host": "localhost",
            "port": broker.device_port,
            "tls": TlsConfig(ca_file=broker.ca_cert, cert_file=cert, key_file=key),
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "drain_interval_s": 0.1,
        }
    )
    assert config.client_id is None  # the default client id is the device id = the certificate CN
    service = SyncService(store, config, device, command_handler=handled.append)
    controller.start()
    acks.start()
    try:
        assert controller.wait_ready(20), controller.last_error
        service.start()
        assert wait_until(lambda: not store.outbox_backlog())  # acknowledged by the controller
        assert wait_until(lambda: sum(1 for e in envelopes if e.kind == "results") >= 4)
        assert acks.published >= 1
        assert service.state().awaiting_ack == 0
        assert {e.device_id for e in envelopes} == {device}
        command = make_envelope(device, "cmd", {"command_id": "c-1", "command": "ping"}, message_id=5)
        assert (
            controller.publish(device_topic(device, "cmd", prefix=DEVICE_PREFIX), encode_message(command))
            is None
        )
        assert wait_until(lambda: len(handled) == 1)
        assert service.downlink.counters.refused == 0
        # The ids the broker enforces: the certificate CN and the controller's user name.
        assert f" as {device} (" in broker.log()
        assert " as controller-2 (" in broker.log()
    finally:
        service.stop()
        acks.stop()
        controller.stop()


def test_controller_example_config_tells_the_truth_about_client_ids() -> None:
    from edgefleet.controller.config import example_config_text

    client_id = ControllerMqtt(MqttConfig(), ["results"], lambda *a: None).client._client_id.decode()
    assert client_id.startswith("edgefleet-controller-")
    assert "edgefleet-controller-<hostname>-<pid>-<random>" in example_config_text()
    assert "use_username_as_clientid" in example_config_text()


def test_a_devices_own_last_will_reaches_the_controller(broker: ShippedBroker) -> None:
    device = unique_device()
    cert, key = broker.device(device)
    controller = Client("ctl").with_password(broker.ca_cert, "controller-1", CONTROLLERS["controller-1"])
    controller.connect(broker.controller_port)
    dying = Client(device).with_certificate(broker.ca_cert, cert, key)
    dying.client.will_set(f"edgefleet/v1/{device}/status", b"offline", qos=1, retain=True)
    try:
        controller.subscribe(f"{DEVICE_PREFIX}/+/status")
        dying.connect(broker.device_port)
        assert dying.connected.is_set()
        sock = dying.client.socket()
        assert sock is not None
        sock.close()  # no DISCONNECT: the broker publishes the will
        assert wait_until(lambda: (f"{DEVICE_PREFIX}/{device}/status", b"offline") in controller.received())
    finally:
        dying.client.loop_stop()
        controller.close()
