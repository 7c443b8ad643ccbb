"""Attack 1: a device joins the controllers' share group to starve them of uplink messages.

Mosquitto 2.0 does not check subscriptions against an acl_file, and deals a share group's message
to one member before checking that member may read it (it then drops it). The shipped
configuration puts devices behind ``mount_point devices/``: a device's ``$share/...`` filter
becomes the plain topic ``devices/$share/...`` and never joins a share group.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from edgefleet.controller.config import MqttConfig, MqttTlsConfig, UplinkKind
from edgefleet.controller.mqtt import ControllerMqtt
from tests.support.broker import MosquittoBroker
from tests.support.shipped_broker import CONTROLLERS, DEVICE_PREFIX, SHARE_GROUP, Client, ShippedBroker
from tests.support.sync_fixtures import ACL_EXAMPLE
from tests.support.tls import make_pki
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

MESSAGES = 80
# Every kind the controllers read through their share group (status is a plain subscription).
SHARED_KINDS: tuple[UplinkKind, ...] = ("results", "telemetry", "events", "drift")


def controller_config(broker: ShippedBroker, user: str) -> MqttConfig:
    env = f"EDGEFLEET_TEST_MQTT_PASSWORD_{user.replace('-', '_').upper()}"
    os.environ[env] = CONTROLLERS[user]
    return MqttConfig(
        host="localhost",
        port=broker.controller_port,
        username=user,
        password_env=env,
        topic_prefix=DEVICE_PREFIX,
        tls=MqttTlsConfig(enabled=True, ca_file=broker.ca_cert),
    )


def device_client(broker: ShippedBroker, device_id: str) -> Client:
    cert, key = broker.device(device_id)
    client = Client(device_id).with_certificate(broker.ca_cert, cert, key).connect(broker.device_port)
    assert client.connected.is_set(), client.connack
    return client


def test_devices_joining_the_controller_share_group_steal_nothing(broker: ShippedBroker) -> None:
    tag = uuid.uuid4().hex[:6]
    victim = device_client(broker, f"victim-{tag}")
    attackers = [device_client(broker, f"thief{i}-{tag}") for i in range(3)]
    received: list[str] = []
    controller = ControllerMqtt(
        controller_config(broker, "controller-1"),
        SHARED_KINDS,
        lambda topic, payload, at: received.append(topic),
    )
    try:
        controller.start()
        assert controller.wait_ready(20), controller.last_error
        assert controller.filters == [
            f"$share/{SHARE_GROUP}/{DEVICE_PREFIX}/+/{kind}" for kind in SHARED_KINDS
        ]
        for thief in attackers:
            # Every spelling of the group the thief could try: the one `controller example-config`
            # prints, the one the controllers really use, and catch-alls.
            for share in (f"$share/{SHARE_GROUP}/#", f"$share/{SHARE_GROUP}/{DEVICE_PREFIX}/#"):
                assert not thief.subscribe(share)[0].is_failure  # granted: but not as a share
            for kind in SHARED_KINDS:
                thief.subscribe(f"$share/{SHARE_GROUP}/edgefleet/v1/+/{kind}")
                thief.subscribe(f"$share/{SHARE_GROUP}/{DEVICE_PREFIX}/+/{kind}")
        for i in range(MESSAGES):
            kind = SHARED_KINDS[i % len(SHARED_KINDS)]
            code = victim.publish(f"edgefleet/v1/victim-{tag}/{kind}", f"m{i}".encode())
            assert not code.is_failure, code
        assert wait_until(lambda: len(received) >= MESSAGES)
        expected = [
            f"{DEVICE_PREFIX}/victim-{tag}/{SHARED_KINDS[i % len(SHARED_KINDS)]}" for i in range(MESSAGES)
        ]
        assert sorted(received) == sorted(expected)
        assert all(thief.received() == [] for thief in attackers)
    finally:
        controller.stop()
        for client in (victim, *attackers):
            client.close()


def test_a_device_certificate_cannot_log_in_on_the_controller_listener(broker: ShippedBroker) -> None:
    cert, key = broker.device(f"sneaky-{uuid.uuid4().hex[:6]}")
    bare = Client("sneaky").with_certificate(broker.ca_cert, cert, key).connect(broker.controller_port)
    guessing = (
        Client("guess")
        .with_password(broker.ca_cert, "controller-1", "wrong-password")
        .connect(broker.controller_port)
    )
    try:
        for attempt in (bare, guessing):
            assert not attempt.connected.is_set()
            assert attempt.connack is not None
            assert attempt.connack.is_failure
            assert "Not authorized" in str(attempt.connack) or "Bad user name" in str(attempt.connack)
    finally:
        bare.close()
        guessing.close()


def test_evidence_an_acl_file_alone_cannot_stop_it(tmp_path: Path) -> None:
    """EVIDENCE, not a defence: why the shipped config relies on mount_point.

    On Mosquitto 2.0 the acl_file plugin allows every SUBSCRIBE (src/security_default.c:
    "FIXME - implement ACL subscription strings"), and a share group deals each message to one
    member before checking that member's read access (src/subs.c, subs__shared_process). With a
    single listener and the ACL file (even with ``pattern deny $share/#``) a device joins the
    controllers' group and the messages dealt to it are dropped: the controller loses them.
    """
    pki = make_pki(tmp_path / "pki")
    acl = tmp_path / "acl"
    acl.write_text(ACL_EXAMPLE.read_text() + "\npattern deny $share/#\n")
    broker = MosquittoBroker(
        tmp_path / "broker",
        listener_lines=[
            f"cafile {pki.ca_cert}",
            f"certfile {pki.broker_cert}",
            f"keyfile {pki.broker_key}",
            "require_certificate true",
            "use_identity_as_username true",
            f"acl_file {acl}",
        ],
        global_lines=("user root",),
    )
    (tmp_path / "broker").mkdir()
    with broker:

        def connect(cn: str) -> Client:
            cert, key = pki.client(cn)
            return Client(cn).with_certificate(pki.ca_cert, cert, key).connect(broker.port)

        controller, thief, victim = connect("controller"), connect("thief"), connect("victim")
        try:
            controller.subscribe(f"$share/{SHARE_GROUP}/edgefleet/v1/+/results")
            granted = thief.subscribe(f"$share/{SHARE_GROUP}/edgefleet/v1/+/results")
            assert not granted[0].is_failure  # the ACL file did not refuse the subscription
            for i in range(20):
                assert not victim.publish("edgefleet/v1/victim/results", f"r{i}".encode()).is_failure
            wait_until(lambda: len(controller.received()) >= 20, timeout=3, fail=False)
            assert thief.received() == []  # dealt to the thief, then dropped by the read check
            assert len(controller.received()) < 20  # ... so the controller lost them
        finally:
            for client in (victim, thief, controller):
                client.close()
