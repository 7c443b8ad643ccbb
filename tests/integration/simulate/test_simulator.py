"""The fleet simulator speaks the real protocol to a real broker."""

from __future__ import annotations

import threading
import time
from collections import Counter

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import CommandBody, EventsBody, ResultsBody, StatusBody, make_envelope
from edgefleet.cloud_sync.topics import device_topic
from edgefleet.errors import EdgefleetError
from edgefleet.simulate import FleetSimulator
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.integration


def subscriber(broker: MosquittoBroker, topic: str) -> tuple[mqtt.Client, list[tuple[str, bytes]]]:
    received: list[tuple[str, bytes]] = []
    ready = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, msg: received.append((msg.topic, bytes(msg.payload)))
    client.on_subscribe = lambda *_: ready.set()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert ready.wait(10)
    return client, received


@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
def test_devices_publish_valid_status_telemetry_and_results(
    mosquitto: MosquittoBroker, protocol: str
) -> None:
    prefix = f"sim-{protocol}"
    client, received = subscriber(mosquitto, "edgefleet/v1/#")
    simulator = FleetSimulator(
        port=mosquitto.port, devices=5, rate=4, telemetry_interval=0.2, protocol=protocol, id_prefix=prefix
    )
    stats = simulator.run(duration=1.5)
    deadline = time.monotonic() + 10
    while len(received) < stats.messages_sent and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()

    envelopes = [decode_message(topic, payload) for topic, payload in received]
    kinds = Counter(e.kind for e in envelopes)
    assert {e.device_id for e in envelopes} == {f"{prefix}-{i:04d}" for i in range(5)}
    assert kinds["telemetry"] > 0
    assert kinds["results"] > 0
    results = sum(len(e.body.results) for e in envelopes if isinstance(e.body, ResultsBody))
    assert results == stats.results_sent
    ids = [(e.device_id, e.message_id) for e in envelopes if e.message_id]
    assert len(ids) == len(set(ids)), "message ids must be unique per device"
    assert len(envelopes) == stats.messages_sent
    final_state = {e.device_id: e.body.state for e in envelopes if isinstance(e.body, StatusBody)}
    assert set(final_state.values()) == {"offline"}, "a clean stop says offline"


def test_commands_are_acknowledged(mosquitto: MosquittoBroker) -> None:
    client, received = subscriber(mosquitto, "edgefleet/v1/+/events")
    simulator = FleetSimulator(port=mosquitto.port, devices=1, rate=0, id_prefix="cmd")
    runner = threading.Thread(target=simulator.run, kwargs={"duration": 30.0})
    runner.start()
    command = make_envelope("cmd-0000", "cmd", CommandBody(command_id="c1", command="report_status"))
    publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    while runner.is_alive() and simulator.stats.connected == 0:
        runner.join(0.05)
    publisher.publish(device_topic("cmd-0000", "cmd"), encode_message(command), qos=1).wait_for_publish(5)
    publisher.publish(device_topic("cmd-0000", "cmd"), b"garbage", qos=1).wait_for_publish(5)

    def event_kinds() -> list[str]:
        bodies = [decode_message(t, p).body for t, p in list(received)]
        return [event.kind for body in bodies if isinstance(body, EventsBody) for event in body.events]

    deadline = time.monotonic() + 20
    while len(event_kinds()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    simulator.stop()
    runner.join()
    publisher.loop_stop()
    client.loop_stop()
    assert sorted(event_kinds()) == ["command.done", "command.refused"]
    assert simulator.stats.commands_received == 1


def test_bad_arguments_are_refused_with_a_hint() -> None:
    with pytest.raises(EdgefleetError, match="--devices must be at least 1"):
        FleetSimulator(devices=0)
    with pytest.raises(EdgefleetError, match="--rate"):
        FleetSimulator(rate=float("nan"))


def test_unreachable_broker_is_a_clear_error() -> None:
    from tests.support.broker import free_port

    simulator = FleetSimulator(port=free_port(), devices=1)
    with pytest.raises(EdgefleetError, match="cannot reach the broker"):
        simulator.run(duration=1)
