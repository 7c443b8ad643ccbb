"""Attack 2: a device takes another device's (or a controller's) MQTT client id.

Under the shipped configuration the broker replaces every client id with the user name
(``use_username_as_clientid``): the certificate CN on the device listener, the login on the
controller listener. A client asking for someone else's id gets its own, so nobody is kicked off,
no session is wiped and no queued command is taken.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.shipped_broker import CONTROLLERS, DEVICE_PREFIX, Client, ShippedBroker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def as_device(broker: ShippedBroker, cn: str, client_id: str, **session: object) -> Client:
    cert, key = broker.device(cn)
    client = Client(client_id, unmount=True, **session)  # type: ignore[arg-type]
    return client.with_certificate(broker.ca_cert, cert, key).connect(broker.device_port)


def as_controller(broker: ShippedBroker, user: str, client_id: str) -> Client:
    client = Client(client_id).with_password(broker.ca_cert, user, CONTROLLERS[user])
    return client.connect(broker.controller_port)


def test_taking_another_devices_client_id_kicks_nobody(broker: ShippedBroker) -> None:
    tag = uuid.uuid4().hex[:6]
    victim_id, attacker_id = f"dev-b-{tag}", f"dev-a-{tag}"
    victim = as_device(broker, victim_id, victim_id)
    controller = as_controller(broker, "controller-1", "ignored")
    attacker = as_device(broker, attacker_id, victim_id)
    try:
        assert victim.connected.is_set()
        assert attacker.connected.is_set()
        victim.subscribe(f"edgefleet/v1/{victim_id}/cmd")
        attacker.subscribe(f"edgefleet/v1/{victim_id}/cmd")
        time.sleep(1.0)
        assert victim.disconnects == []  # not kicked off by the attacker's CONNECT
        assert not controller.publish(f"{DEVICE_PREFIX}/{victim_id}/cmd", b"for-b").is_failure
        assert wait_until(lambda: victim.received() == [(f"edgefleet/v1/{victim_id}/cmd", b"for-b")])
        time.sleep(0.5)
        assert attacker.received() == []
    finally:
        for client in (attacker, controller, victim):
            client.close()


def test_a_device_cannot_resume_or_wipe_another_devices_session(broker: ShippedBroker) -> None:
    tag = uuid.uuid4().hex[:6]
    victim_id, attacker_id = f"dev-b-{tag}", f"dev-a-{tag}"
    # The victim has a persistent session with its command subscription, then goes offline.
    victim = as_device(broker, victim_id, victim_id, clean_start=False, session_expiry_s=3600)
    victim.subscribe(f"edgefleet/v1/{victim_id}/cmd")
    victim.close()
    controller = as_controller(broker, "controller-1", "ignored")
    assert not controller.publish(f"{DEVICE_PREFIX}/{victim_id}/cmd", b"queued-for-b").is_failure
    # Resuming the victim's session (clean_start False) and wiping it (clean_start True).
    resumer = as_device(broker, attacker_id, victim_id, clean_start=False, session_expiry_s=3600)
    wiper = as_device(broker, attacker_id, victim_id, clean_start=True)
    try:
        time.sleep(1.0)
        assert resumer.received() == []
        assert wiper.received() == []
    finally:
        for client in (resumer, wiper, controller):
            client.close()
    back = as_device(broker, victim_id, victim_id, clean_start=False, session_expiry_s=3600)
    try:
        assert wait_until(lambda: back.received() == [(f"edgefleet/v1/{victim_id}/cmd", b"queued-for-b")])
    finally:
        back.close()


def test_a_device_cannot_take_a_controllers_client_id(broker: ShippedBroker) -> None:
    controller = as_controller(broker, "controller-1", "controller-1")
    intruder = as_device(broker, f"dev-c-{uuid.uuid4().hex[:6]}", "controller-1")
    other = as_controller(broker, "controller-2", "controller-1")
    try:
        assert intruder.connected.is_set()
        assert other.connected.is_set()
        time.sleep(1.0)
        assert controller.disconnects == []
        assert not controller.publish(f"{DEVICE_PREFIX}/nobody/cmd", b"still-connected").is_failure
    finally:
        for client in (other, intruder, controller):
            client.close()
