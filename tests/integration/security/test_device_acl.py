"""Attacks that must stay refused under the shipped configuration: a device reading or writing
another device's topics, writing its own downlink, catch-all subscriptions, a retained last will
on another device, no certificate, a plain-TCP connection to the TLS port."""

from __future__ import annotations

import socket
import ssl
import time
import uuid

import pytest

from tests.support.shipped_broker import CONTROLLERS, DEVICE_PREFIX, Client, ShippedBroker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def device(broker: ShippedBroker, device_id: str) -> Client:
    cert, key = broker.device(device_id)
    client = Client(device_id, unmount=True).with_certificate(broker.ca_cert, cert, key)
    return client.connect(broker.device_port)


@pytest.mark.parametrize(
    "topic",
    [
        "edgefleet/v1/{victim}/results",  # forge another device's uplink
        "edgefleet/v1/{victim}/status",
        "edgefleet/v1/{victim}/cmd",  # command another device
        "edgefleet/v1/{attacker}/cmd",  # command itself (downlink is the controller's)
        "edgefleet/v1/{attacker}/ack",
        "devices/edgefleet/v1/{victim}/results",  # spell out the mount point
        "../edgefleet/v1/{victim}/results",
    ],
)
def test_publishing_outside_its_own_uplink_is_refused(broker: ShippedBroker, topic: str) -> None:
    tag = uuid.uuid4().hex[:6]
    attacker_id, victim_id = f"att-{tag}", f"vic-{tag}"
    attacker = device(broker, attacker_id)
    spy = Client("spy").with_password(broker.ca_cert, "controller-1", CONTROLLERS["controller-1"])
    spy.connect(broker.controller_port)
    try:
        spy.subscribe(f"{DEVICE_PREFIX}/#")
        spy.subscribe("#")
        code = attacker.publish(topic.format(victim=victim_id, attacker=attacker_id), b"forged")
        assert code.is_failure
        assert "Not authorized" in str(code)
        time.sleep(0.5)
        assert spy.received() == []
    finally:
        attacker.close()
        spy.close()


def test_catch_all_and_foreign_subscriptions_receive_nothing(broker: ShippedBroker) -> None:
    tag = uuid.uuid4().hex[:6]
    attacker = device(broker, f"att-{tag}")
    victim = device(broker, f"vic-{tag}")
    controller = Client("ctl").with_password(broker.ca_cert, "controller-1", CONTROLLERS["controller-1"])
    controller.connect(broker.controller_port)
    try:
        for topic in ("#", "$SYS/#", f"edgefleet/v1/vic-{tag}/cmd", "edgefleet/v1/+/results", "+/+/+/+/#"):
            attacker.subscribe(topic)
        assert not victim.publish(f"edgefleet/v1/vic-{tag}/results", b"private").is_failure
        assert not controller.publish(f"{DEVICE_PREFIX}/vic-{tag}/cmd", b"private-cmd").is_failure
        victim.subscribe(f"edgefleet/v1/vic-{tag}/cmd")
        assert not controller.publish(f"{DEVICE_PREFIX}/vic-{tag}/cmd", b"second-cmd").is_failure
        assert wait_until(lambda: (f"edgefleet/v1/vic-{tag}/cmd", b"second-cmd") in victim.received())
        time.sleep(0.5)
        assert attacker.received() == []
    finally:
        for client in (attacker, victim, controller):
            client.close()


def test_a_retained_last_will_on_another_device_is_refused(broker: ShippedBroker) -> None:
    tag = uuid.uuid4().hex[:6]
    cert, key = broker.device(f"att-{tag}")
    attacker = Client(f"att-{tag}").with_certificate(broker.ca_cert, cert, key)
    attacker.client.will_set(f"edgefleet/v1/vic-{tag}/status", b"offline-forged", qos=1, retain=True)
    attacker.connect(broker.device_port)
    assert attacker.connected.is_set()
    sock = attacker.client.socket()
    assert sock is not None
    sock.close()  # die without DISCONNECT: the broker would publish the will
    time.sleep(1.0)
    attacker.client.loop_stop()
    late = Client("late").with_password(broker.ca_cert, "controller-2", CONTROLLERS["controller-2"])
    late.connect(broker.controller_port)
    try:
        late.subscribe(f"{DEVICE_PREFIX}/vic-{tag}/status")
        time.sleep(1.0)
        assert late.received() == []
    finally:
        late.close()


def test_no_certificate_and_plain_tcp_are_refused(broker: ShippedBroker) -> None:
    no_cert = Client("anon")
    no_cert.client.tls_set_context(ssl.create_default_context(cafile=str(broker.ca_cert)))
    no_cert.connect(broker.device_port)
    try:
        assert not no_cert.connected.is_set()
    finally:
        no_cert.close()
    with socket.create_connection(("127.0.0.1", broker.device_port), timeout=5) as raw:
        # An MQTT 5 CONNECT in clear text: the TLS listener never answers with a CONNACK.
        raw.sendall(bytes.fromhex("101000044d5154540502003c000003616e6f6e"))
        raw.settimeout(5)
        try:
            reply = raw.recv(16)
        except (ConnectionResetError, TimeoutError):
            reply = b""
        assert not reply.startswith(b"\x20")
