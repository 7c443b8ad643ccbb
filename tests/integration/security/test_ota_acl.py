"""The OTA topics under the shipped two-listener configuration: a device reads only its own
``ota/offer`` and ``ota/chunk`` and writes only its own ``ota/chunk_request`` and ``ota/progress``;
the controllers read the uplink ones and write the downlink ones."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.shipped_broker import CONTROLLERS, DEVICE_PREFIX, Client, ShippedBroker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _device(broker: ShippedBroker, device_id: str) -> Client:
    cert, key = broker.device(device_id)
    return (
        Client(device_id, unmount=True)
        .with_certificate(broker.ca_cert, cert, key)
        .connect(broker.device_port)
    )


def _controller(broker: ShippedBroker) -> Client:
    client = Client("ctl").with_password(broker.ca_cert, "controller-1", CONTROLLERS["controller-1"])
    return client.connect(broker.controller_port)


def test_a_device_writes_its_own_ota_uplink_and_reads_its_own_ota_downlink(broker: ShippedBroker) -> None:
    tag = uuid.uuid4().hex[:6]
    dev, other = _device(broker, f"dev-{tag}"), _device(broker, f"oth-{tag}")
    controller = _controller(broker)
    try:
        controller.subscribe(f"{DEVICE_PREFIX}/+/ota/chunk_request")
        controller.subscribe(f"{DEVICE_PREFIX}/+/ota/progress")
        for kind in ("ota/offer", "ota/chunk"):
            dev.subscribe(f"edgefleet/v1/dev-{tag}/{kind}")
            other.subscribe(f"edgefleet/v1/dev-{tag}/{kind}")  # another device's downlink: never delivered
        for kind in ("ota/chunk_request", "ota/progress"):
            assert not dev.publish(f"edgefleet/v1/dev-{tag}/{kind}", kind.encode()).is_failure
        for kind in ("ota/offer", "ota/chunk"):
            assert not controller.publish(f"{DEVICE_PREFIX}/dev-{tag}/{kind}", kind.encode()).is_failure
        assert wait_until(
            lambda: (
                {
                    (f"{DEVICE_PREFIX}/dev-{tag}/{k}", k.encode())
                    for k in ("ota/chunk_request", "ota/progress")
                }
                <= set(controller.received())
            )
        )
        assert wait_until(
            lambda: (
                {(f"edgefleet/v1/dev-{tag}/{k}", k.encode()) for k in ("ota/offer", "ota/chunk")}
                <= set(dev.received())
            )
        )
        time.sleep(0.5)
        assert other.received() == []
    finally:
        for client in (dev, other, controller):
            client.close()


@pytest.mark.parametrize(
    "topic",
    [
        "edgefleet/v1/{attacker}/ota/offer",  # offer itself a bundle (downlink is the controller's)
        "edgefleet/v1/{attacker}/ota/chunk",  # feed itself chunks
        "edgefleet/v1/{victim}/ota/chunk",  # feed another device chunks
        "edgefleet/v1/{victim}/ota/chunk_request",  # ask in another device's name
        "edgefleet/v1/{victim}/ota/progress",  # forge another device's progress
    ],
)
def test_a_device_cannot_write_ota_topics_that_are_not_its_own_uplink(
    broker: ShippedBroker, topic: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    attacker = _device(broker, f"att-{tag}")
    victim = _device(broker, f"vic-{tag}")
    try:
        victim.subscribe(f"edgefleet/v1/vic-{tag}/ota/chunk")
        code = attacker.publish(topic.format(victim=f"vic-{tag}", attacker=f"att-{tag}"), b"forged")
        assert code.is_failure
        assert "Not authorized" in str(code)
        time.sleep(0.5)
        assert victim.received() == []
    finally:
        attacker.close()
        victim.close()
