"""Downlink over a real broker: commands reach the handler; bad messages become events."""

from __future__ import annotations

import time

import msgpack
import pytest

from edgefleet.agent.store import Store
from edgefleet.cloud_sync import SyncConfig, SyncService, make_envelope
from edgefleet.cloud_sync.codec import MAGIC, encode_message
from edgefleet.cloud_sync.config import MqttProtocol
from edgefleet.cloud_sync.protocol import CommandBody, Envelope
from tests.support.broker import MosquittoBroker
from tests.support.sync_fixtures import Collector, body_of, unique_device
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
def test_bad_downlink_is_refused_with_events_and_the_agent_keeps_going(
    mosquitto: MosquittoBroker, store: Store, protocol: MqttProtocol
) -> None:
    device = unique_device()
    handled: list[Envelope] = []
    configs: list[Envelope] = []
    config = SyncConfig(
        port=mosquitto.port,
        protocol=protocol,
        max_message_bytes=4096,
        drain_interval_s=0.1,
        end_to_end_ack=False,
    )
    service = SyncService(store, config, device, command_handler=handled.append)
    service.register_handler("config", configs.append)
    service.start()
    cmd_topic = f"edgefleet/v1/{device}/cmd"
    good = make_envelope(device, "cmd", {"command_id": "c-1", "command": "restart_pipeline"}, message_id=11)
    wrong_schema = (
        MAGIC
        + bytes((1, 0))
        + msgpack.packb({"i": 12, "d": device, "k": "cmd", "c": 0.0, "b": {"command": "format_disk"}})
    )
    try:
        with Collector(mosquitto, [f"edgefleet/v1/{device}/events"]) as controller:
            assert wait_until(lambda: service.state().connected)
            time.sleep(0.2)  # subscription is sent right after CONNACK
            controller.publish(cmd_topic, b"\x00\xffgarbage")
            controller.publish(cmd_topic, b'{"command": "restart_pipeline"}')
            controller.publish(cmd_topic, wrong_schema)
            controller.publish(cmd_topic, MAGIC + bytes((9, 0)) + b"future")
            controller.publish(cmd_topic, encode_message(good) + b"\x00" * 5000)  # oversize
            controller.publish(cmd_topic, encode_message(good))
            controller.publish(cmd_topic, encode_message(good))  # QoS 1 redelivery: handled once
            controller.send(
                make_envelope(device, "config", {"config_version": 3, "config": {"a": 1}}, message_id=13)
            )
            assert wait_until(lambda: len(handled) == 1 and len(configs) == 1)
            assert wait_until(lambda: service.state().downlink.get("refused") == 5)
            assert service.state().downlink["duplicates"] == 1
            # The refusals are events in the store, which the uplink sends to the controller.
            assert controller.wait_for(lambda: len(controller.of_kind("events", device)) >= 5)
    finally:
        service.stop()
    refusals = list(store.query_events(kind="sync.downlink_refused", limit=20))
    reasons = sorted(e["data"]["reason"] if isinstance(e["data"], dict) else e["data"] for e in refusals)
    assert reasons == ["malformed", "malformed", "malformed", "oversize", "unknown_version"]
    assert body_of(handled[0], CommandBody).command_id == "c-1"
