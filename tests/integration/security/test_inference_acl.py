"""Cloud fallback topics under the shipped configuration: a device publishes only its own
``infer/request`` and receives only its own ``infer/response``, while the inference workers (on
the controller listener, one broker user each: the listener makes the user name the client id)
serve every device beside the controller's own connection."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import InferRequestBody, InferResponseBody, make_envelope
from edgefleet.controller.config import MqttConfig, MqttTlsConfig
from edgefleet.controller.inference import InferenceConfig
from edgefleet.controller.inference.worker import InferencePool
from edgefleet.controller.mqtt import ControllerMqtt
from tests.support.shipped_broker import CONTROLLERS, DEVICE_PREFIX, Client, ShippedBroker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

CLOUD_BUNDLE = Path(__file__).resolve().parents[3] / "models" / "bundles" / "watch-cloud"
WORKERS = {"infer-1": "infer-password", "infer-2": "infer-password"}  # one password, two users
PASSWORD_ENV = "EDGEFLEET_TEST_MQTT_PASSWORD_INFER_ACL"
CONTROLLER_ENV = "EDGEFLEET_TEST_MQTT_PASSWORD_CONTROLLER_ACL"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedBroker]:
    with ShippedBroker(tmp_path_factory.mktemp("shipped-broker"), {**CONTROLLERS, **WORKERS}) as running:
        yield running


def device(broker: ShippedBroker, device_id: str) -> Client:
    cert, key = broker.device(device_id)
    client = Client(device_id, unmount=True).with_certificate(broker.ca_cert, cert, key)
    client.connect(broker.device_port)
    assert client.connected.is_set(), client.connack
    return client


def request(device_id: str, request_id: str) -> bytes:
    window = np.random.default_rng(0).normal(size=(100, 6)).astype("<f4")
    body = InferRequestBody(
        request_id=request_id,
        stream="imu",
        window_start=0.0,
        window_end=2.0,
        shape=[100, 6],
        data=window.tobytes(),
        fallback_reason="low_confidence",
    )
    return encode_message(make_envelope(device_id, "infer/request", body))


def answered_ids(client: Client) -> set[tuple[str, str]]:
    """(topic, request id) of every response the client received."""
    out = set()
    for topic, payload in client.received():
        envelope = decode_message(topic, payload, prefix="edgefleet/v1")
        assert isinstance(envelope.body, InferResponseBody)
        out.add((topic, envelope.body.request_id))
    return out


def controller_mqtt(broker: ShippedBroker) -> MqttConfig:
    """The controller's own settings, as docs/security.md has them (user controller-1)."""
    os.environ[CONTROLLER_ENV] = CONTROLLERS["controller-1"]
    os.environ[PASSWORD_ENV] = WORKERS["infer-1"]
    return MqttConfig(
        host="localhost",
        port=broker.controller_port,
        username="controller-1",
        password_env=CONTROLLER_ENV,
        topic_prefix=DEVICE_PREFIX,
        tls=MqttTlsConfig(enabled=True, ca_file=broker.ca_cert),
    )


@pytest.fixture
def pool(broker: ShippedBroker) -> InferencePool:
    config = InferenceConfig(
        enabled=True, bundle=CLOUD_BUNDLE, workers=2, usernames=list(WORKERS), password_env=PASSWORD_ENV
    )
    return InferencePool(controller_mqtt(broker), config)


def test_a_device_cannot_ask_as_another_nor_read_its_answers(
    broker: ShippedBroker, pool: InferencePool
) -> None:
    tag = uuid.uuid4().hex[:6]
    a_id, b_id = f"dev-a-{tag}", f"dev-b-{tag}"
    a, b = device(broker, a_id), device(broker, b_id)
    # The controller's own connection stays up beside the workers: none takes another's client id.
    controller = ControllerMqtt(controller_mqtt(broker), ["results"], lambda topic, payload, at: None)
    controller.start()
    pool.start()
    try:
        assert controller.wait_ready(20), controller.last_error
        assert pool.wait_ready(20), [w.last_error for w in pool.workers]
        # A listens on everything of B's it could name, and on catch-alls.
        for topic in (f"edgefleet/v1/{b_id}/infer/response", "edgefleet/v1/+/infer/response", "#"):
            a.subscribe(topic)
        a.subscribe(f"edgefleet/v1/{a_id}/infer/response")
        b.subscribe(f"edgefleet/v1/{b_id}/infer/response")

        # A forges a request as B: refused by the broker, so no worker ever sees it.
        forged = a.publish(f"edgefleet/v1/{b_id}/infer/request", request(b_id, "forged"))
        assert forged.is_failure
        assert "Not authorized" in str(forged)
        # A cannot slip its own request onto a response topic either.
        assert a.publish(f"edgefleet/v1/{a_id}/infer/response", request(a_id, "self-answer")).is_failure

        # Both ask for themselves; the worker serves both, each on its own response topic.
        assert not a.publish(f"edgefleet/v1/{a_id}/infer/request", request(a_id, "a-1")).is_failure
        assert not b.publish(f"edgefleet/v1/{b_id}/infer/request", request(b_id, "b-1")).is_failure
        assert wait_until(lambda: answered_ids(b) == {(f"edgefleet/v1/{b_id}/infer/response", "b-1")})
        assert wait_until(lambda: (f"edgefleet/v1/{a_id}/infer/response", "a-1") in answered_ids(a))
        time.sleep(0.5)  # anything else misrouted would have arrived by now
        assert answered_ids(a) == {(f"edgefleet/v1/{a_id}/infer/response", "a-1")}
        assert answered_ids(b) == {(f"edgefleet/v1/{b_id}/infer/response", "b-1")}
        stats = pool.stats()
        assert (stats.received, stats.answered) == (2, 2)  # the forged request never arrived
        assert "already connected, closing old connection" not in broker.log()
        assert controller.connected
        assert all(w.last_error is None for w in pool.workers), [w.last_error for w in pool.workers]
    finally:
        controller.stop()
        pool.stop()
        a.close()
        b.close()
