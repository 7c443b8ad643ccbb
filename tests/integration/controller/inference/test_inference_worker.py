"""Cloud inference workers against a real Mosquitto, with the shipped cloud bundle and real windows
of the held-out watch recordings: answers, correlation, load split, refusals."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import InferRequestBody, InferResponseBody, make_envelope
from edgefleet.cloud_sync.topics import device_topic
from edgefleet.controller.config import MqttConfig
from edgefleet.controller.inference import InferenceConfig
from edgefleet.controller.inference.worker import InferencePool
from edgefleet.runtime.bundle import load_bundle
from tests.integration.controller.conftest import wait_for
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[4] / "models"
CLOUD_BUNDLE = MODELS / "bundles" / "watch-cloud"
PREFIX = "edgefleet/v1"


def held_out_windows(n: int) -> np.ndarray[Any, Any]:
    """``n`` raw windows (100 x 6) from the held-out subjects, spread over their recordings."""
    with np.load(MODELS / "data" / "watch.npz") as d:
        samples, offsets, test = d["samples"], d["offsets"], d["test"]
    recordings = [samples[offsets[i] : offsets[i + 1]] for i in np.flatnonzero(test)]
    windows = []
    for k in range(n):  # one window per recording in turn, from further in on each pass
        rec = recordings[k % len(recordings)]
        start = 300 + 150 * (k // len(recordings))
        windows.append(rec[start : start + 100])
    return np.stack(windows).astype(np.float32)


class Device:
    """A paho client acting as one device: publishes requests, collects its responses."""

    def __init__(self, broker: MosquittoBroker, device_id: str, *, v5: bool = True) -> None:
        self.device_id = device_id
        self.v5 = v5
        self.responses: list[tuple[InferResponseBody, bytes | None]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"dev-{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(device_topic(device_id, "infer/response", prefix=PREFIX), qos=1)
        assert self._subscribed.wait(10), "device subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        envelope = decode_message(message.topic, bytes(message.payload), prefix=PREFIX)
        assert isinstance(envelope.body, InferResponseBody)
        props = getattr(message, "properties", None)
        correlation = (
            bytes(props.CorrelationData) if props is not None and hasattr(props, "CorrelationData") else None
        )
        with self._lock:
            self.responses.append((envelope.body, correlation))

    def request(
        self, request_id: str, window: np.ndarray[Any, Any], *, shape: list[int] | None = None
    ) -> None:
        body = InferRequestBody(
            request_id=request_id,
            stream="imu",
            window_start=0.0,
            window_end=2.0,
            shape=shape if shape is not None else list(window.shape),
            data=np.ascontiguousarray(window, dtype="<f4").tobytes(),
            fallback_reason="low_confidence",
        )
        self.publish_raw(encode_message(make_envelope(self.device_id, "infer/request", body)), request_id)

    def publish_raw(self, payload: bytes, correlation: str) -> None:
        topic = device_topic(self.device_id, "infer/request", prefix=PREFIX)
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = device_topic(self.device_id, "infer/response", prefix=PREFIX)
            props.CorrelationData = f"corr-{correlation}".encode()
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def answers(self) -> list[tuple[InferResponseBody, bytes | None]]:
        with self._lock:
            return list(self.responses)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_pool(
    broker: MosquittoBroker, *, workers: int = 1, protocol: str = "mqtt5", **extra: Any
) -> InferencePool:
    mqtt_config = MqttConfig(host=broker.host, port=broker.port, protocol=protocol)  # type: ignore[arg-type]
    config = InferenceConfig(enabled=True, bundle=CLOUD_BUNDLE, workers=workers, **extra)
    pool = InferencePool(mqtt_config, config)
    pool.start()
    assert pool.wait_ready(15), [w.last_error for w in pool.workers]
    return pool


@pytest.fixture
def pool(mosquitto: MosquittoBroker) -> Iterator[InferencePool]:
    p = start_pool(mosquitto, max_wait_ms=20.0)
    yield p
    p.stop()


def cloud_answers(windows: np.ndarray[Any, Any]) -> tuple[list[str | None], np.ndarray[Any, Any]]:
    bundle = load_bundle(CLOUD_BUNDLE)
    with bundle.open_model(threads=1) as model:
        answers = bundle.interpret_batch(model.predict(bundle.preprocess(windows)))
    return answers.labels, answers.values


def test_requests_are_answered_with_their_correlation_and_the_cloud_models_answer(
    mosquitto: MosquittoBroker, pool: InferencePool
) -> None:
    windows = held_out_windows(12)
    labels, values = cloud_answers(windows)
    assert len(set(labels)) > 2  # the windows are not all one exercise: the answers mean something
    device = Device(mosquitto, "watch-1")
    try:
        for i, window in enumerate(windows):
            device.request(f"req-{i}", window)
        wait_for(lambda: len(device.answers()) == len(windows), what="12 answers")
        by_id = {body.request_id: (body, corr) for body, corr in device.answers()}
        assert sorted(by_id) == sorted(f"req-{i}" for i in range(len(windows)))
        for i in range(len(windows)):
            body, corr = by_id[f"req-{i}"]
            assert corr == f"corr-req-{i}".encode()
            assert body.error is None
            assert body.model_name == "watch-cloud"
            assert body.label == labels[i]
            assert body.outputs is not None
            assert np.allclose(body.outputs, values[i], atol=1e-5)
            assert body.score == pytest.approx(float(values[i].max()), abs=1e-5)
    finally:
        device.close()
    stats = pool.stats()
    assert stats.answered == stats.received == len(windows)
    assert stats.batches <= len(windows)
    assert not stats.refused


def test_two_workers_split_the_load(mosquitto: MosquittoBroker) -> None:
    pool = start_pool(mosquitto, workers=2, max_wait_ms=2.0)
    devices = [Device(mosquitto, f"watch-{i}") for i in range(3)]
    windows = held_out_windows(20)
    try:
        for device in devices:
            for i, window in enumerate(windows):
                device.request(f"{device.device_id}-{i}", window)
        total = len(devices) * len(windows)
        wait_for(lambda: sum(len(d.answers()) for d in devices) >= total, what=f"{total} answers")
        for device in devices:
            ids = [body.request_id for body, _ in device.answers()]
            assert sorted(ids) == sorted(f"{device.device_id}-{i}" for i in range(len(windows)))  # once each
        per_worker = [w.stats.answered for w in pool.workers]
        assert sum(per_worker) == total
        assert all(n > 0 for n in per_worker), per_worker
    finally:
        for device in devices:
            device.close()
        pool.stop()


def test_malformed_requests_are_refused_and_counted_and_the_worker_goes_on(
    mosquitto: MosquittoBroker, pool: InferencePool
) -> None:
    device = Device(mosquitto, "watch-bad")
    window = held_out_windows(1)[0]
    try:
        device.publish_raw(b"not an envelope", "garbage")
        device.request("wrong-shape", window[:50])
        nan = window.copy()
        nan[3, 2] = np.nan
        device.request("nan", nan)
        body = InferRequestBody(
            request_id="short",
            stream="imu",
            window_start=0.0,
            window_end=2.0,
            shape=[100, 6],
            data=b"\x00" * 100,
            fallback_reason="low_confidence",
        )
        device.publish_raw(encode_message(make_envelope("watch-bad", "infer/request", body)), "short")
        device.request("good", window)
        wait_for(lambda: any(b.request_id == "good" for b, _ in device.answers()), what="the good answer")
        wait_for(lambda: len(device.answers()) == 4, what="3 error answers and 1 answer")
        answers = {b.request_id: b for b, _ in device.answers()}
        assert answers["good"].error is None
        assert answers["good"].label is not None
        assert "window shape [50, 6]" in (answers["wrong-shape"].error or "")
        assert "NaN" in (answers["nan"].error or "")
        assert "100 data bytes" in (answers["short"].error or "")
    finally:
        device.close()
    stats = pool.stats()
    assert stats.refused == {"malformed": 1, "bad_shape": 1, "bad_data": 2}
    assert stats.received == 5
    assert stats.answered == 1


def test_mqtt311_devices_are_answered_through_the_topic_scheme(mosquitto: MosquittoBroker) -> None:
    pool = start_pool(mosquitto, protocol="mqtt311")
    device = Device(mosquitto, "watch-old", v5=False)
    windows = held_out_windows(3)
    labels, _ = cloud_answers(windows)
    try:
        for i, window in enumerate(windows):
            device.request(f"old-{i}", window)
        wait_for(lambda: len(device.answers()) == 3, what="3 answers")
        got = {b.request_id: (b.label, corr) for b, corr in device.answers()}
        assert got == {f"old-{i}": (labels[i], None) for i in range(3)}
    finally:
        device.close()
        pool.stop()
