"""mqtt source against a real Mosquitto: samples, bad payloads, reconnect after a broker restart."""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.agent.sources import MqttSource, MqttSourceConfig
from tests.integration.agent.sources.helpers import Collector
from tests.support.broker import MosquittoBroker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class Publisher:
    """A plain paho client publishing like a sensor node (QoS 1, waits for the broker's ack)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: MosquittoBroker) -> Iterator[Publisher]:
    pub = Publisher(mosquitto)
    yield pub
    pub.close()


def make_source(broker: MosquittoBroker, topic: str, sink: Collector, **extra: Any) -> MqttSource:
    config = MqttSourceConfig(
        name="mqtt-imu",
        host=broker.host,
        port=broker.port,
        topic=topic,
        qos=1,
        channels=3,
        reconnect_min_s=1,
        reconnect_max_s=2,
        **extra,
    )
    return MqttSource(config, sink)


def test_json_and_packed_samples_arrive(
    mosquitto: MosquittoBroker, publisher: Publisher, unique_topic: str
) -> None:
    sink = Collector()
    source = make_source(mosquitto, f"{unique_topic}/+", sink)
    packed_source = make_source(
        mosquitto, f"{unique_topic}/packed", Collector(), format="packed", timestamped=True
    )
    packed_sink = packed_source._sink
    assert isinstance(packed_sink, Collector)
    with source, packed_source:
        wait_until(lambda: source.connected and packed_source.connected, what="subscriptions")
        publisher.publish(f"{unique_topic}/node1", b'{"ts": 5.0, "values": [1, 2, 3]}\n[4, 5, 6]')
        publisher.publish(f"{unique_topic}/packed", struct.pack("<d3f", 9.0, 7, 8, 9))
        wait_until(lambda: sink.count == 2 and packed_sink.count == 1, what="samples")
        # the wildcard subscription also sees the packed message, which is not JSON: counted as bad
        wait_until(lambda: source.stats.bad_samples == 1, what="bad count")
    samples, times = sink.arrays(3)
    np.testing.assert_array_equal(samples, [[1, 2, 3], [4, 5, 6]])
    assert times[0] == 5.0
    packed, packed_times = packed_sink.arrays(3)
    np.testing.assert_array_equal(packed, [[7, 8, 9]])
    assert packed_times.tolist() == [9.0]
    assert not source.running


@pytest.mark.parametrize(
    "payload",
    [b"{nope", b"[1, 2]", b"[1, NaN, 3]", b"[1, 2, 3, 4]", b'{"values": [1, "a", 3]}', b"\xff", b""],
)
def test_bad_payloads_are_counted_and_dropped(
    mosquitto: MosquittoBroker, publisher: Publisher, unique_topic: str, payload: bytes
) -> None:
    sink = Collector()
    source = make_source(mosquitto, unique_topic, sink)
    with source:
        wait_until(lambda: source.connected, what="subscription")
        publisher.publish(unique_topic, payload)
        publisher.publish(unique_topic, json.dumps([0.5, 0.25, 0.125]).encode())
        wait_until(lambda: sink.count == 1 and source.stats.bad_samples == 1, what="good + bad")
    samples, _ = sink.arrays(3)
    np.testing.assert_array_equal(samples, [[0.5, 0.25, 0.125]])
    assert source.stats.frames == 2
    assert source.stats.last_error is not None
    assert unique_topic in source.stats.last_error


def test_reconnects_after_broker_restart_and_waits_for_a_late_broker(
    mosquitto: MosquittoBroker, unique_topic: str
) -> None:
    sink = Collector()
    mosquitto.stop()
    source = make_source(mosquitto, unique_topic, sink)
    source.start()
    try:
        wait_until(lambda: source.stats.last_error is not None, what="connect failure recorded")
        assert not source.connected
        mosquitto.start()  # same port
        wait_until(lambda: source.connected, timeout=30, what="first connection")
        pub = Publisher(mosquitto)
        pub.publish(unique_topic, b"[1, 1, 1]")
        wait_until(lambda: sink.count == 1, what="first sample")
        pub.close()

        mosquitto.restart()
        wait_until(lambda: source.connected, timeout=30, what="reconnection")
        pub = Publisher(mosquitto)
        pub.publish(unique_topic, b"[2, 2, 2]")
        wait_until(lambda: sink.count == 2, what="sample after restart")
        pub.close()
    finally:
        source.stop()
    samples, _ = sink.arrays(3)
    np.testing.assert_array_equal(samples, [[1, 1, 1], [2, 2, 2]])
    assert not source.connected


def test_backoff_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="reconnect_max_s"):
        MqttSourceConfig(name="m", topic="t", channels=1, reconnect_min_s=10, reconnect_max_s=2)
