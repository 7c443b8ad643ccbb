"""The device-side cloud fallback against a real Mosquitto and a real inference worker: the shipped
watch edge model answers held-out windows, unsure ones go to the cloud model, within an SLO."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.agent.cloud_router import CloudRouter, ConfidencePolicy
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.routing import offer
from edgefleet.agent.store import ResultRecord
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import InferResponseBody, make_envelope
from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.ringbuffer import Window
from tests.integration.controller.conftest import wait_for
from tests.integration.controller.inference.test_inference_worker import (
    cloud_answers,
    held_out_windows,
    start_pool,
)
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"
EDGE_BUNDLE = MODELS / "bundles" / "watch-edge-onnx"
PREFIX = "edgefleet/v1"


class Link:
    """The device's MQTT client: publishes requests, hands responses to the router."""

    def __init__(self, broker: MosquittoBroker, device_id: str) -> None:
        self.router: CloudRouter | None = None
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"{PREFIX}/{device_id}/infer/response", qos=1)
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self.router is not None:
            self.router.on_response(message.topic, bytes(message.payload))

    def publish(self, topic: str, payload: bytes) -> str | None:
        info = self.client.publish(topic, payload, qos=1)
        return None if info.rc == mqtt.MQTT_ERR_SUCCESS else mqtt.error_string(info.rc)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Stored:
    def __init__(self) -> None:
        self.records: list[ResultRecord] = []
        self.lock = threading.Lock()

    def __call__(self, records: Sequence[ResultRecord]) -> None:
        with self.lock:
            self.records.extend(records)

    def all(self) -> list[ResultRecord]:
        with self.lock:
            return list(self.records)


def edge_batch(n: int) -> tuple[list[Window], list[Any], list[ResultRecord], list[str | None]]:
    """Held-out windows with the real edge model's predictions and edge records."""
    data = held_out_windows(n)
    bundle = load_bundle(EDGE_BUNDLE)
    with bundle.open_model(threads=1) as model:
        predictions = bundle.interpret(model.predict(bundle.preprocess(data)))
    windows = [Window("imu", i, float(i), float(i) + 2, data[i], ready_at=0.0) for i in range(n)]
    records = [
        ResultRecord(
            "imu",
            float(i),
            float(i) + 2,
            "watch-edge-onnx",
            "1.0.0",
            p.label,
            p.score,
            None,
            1.0,
            window_seq=i,
        )
        for i, p in enumerate(predictions)
    ]
    return windows, predictions, records, [p.label for p in predictions]


@pytest.fixture
def link(mosquitto: MosquittoBroker) -> Iterator[Link]:
    lk = Link(mosquitto, "watch-dev")
    yield lk
    lk.close()


def test_unsure_windows_get_the_cloud_answer_and_sure_ones_keep_the_edge_answer(
    mosquitto: MosquittoBroker, link: Link
) -> None:
    pool = start_pool(mosquitto, max_wait_ms=2.0)
    stored = Stored()
    router = CloudRouter(
        device_id="watch-dev",
        publish=link.publish,
        deliver=stored,
        policy=ConfidencePolicy(0.8),
        latency_slo_ms=10_000,
    )
    link.router = router
    try:
        windows, predictions, records, _ = edge_batch(30)
        cloud_labels, _ = cloud_answers(np.stack([w.data for w in windows]))
        counters = PipelineCounters()
        keep = offer(router, windows, predictions, records, counters)
        unsure = [i for i, p in enumerate(predictions) if p.score is not None and p.score < 0.8]
        assert 0 < len(unsure) < 30  # the policy splits this batch
        assert [r.window_seq for r in keep] == [i for i in range(30) if i not in unsure]
        wait_for(lambda: len(stored.all()) == len(unsure), what="cloud answers")
        by_seq = {r.window_seq: r for r in stored.all()}
        for i in unsure:
            assert by_seq[i].answered_by == "cloud"
            assert by_seq[i].fallback_reason == "low_confidence"
            assert by_seq[i].label == cloud_labels[i]
            assert by_seq[i].model_name == "watch-cloud"
        assert router.counts["cloud"] == router.counts["sent"] == len(unsure)
        assert counters.snapshot().windows_to_fallback == len(unsure)
    finally:
        router.close()
        pool.stop()


def test_without_a_worker_the_edge_answer_is_stored_flagged_after_the_slo(link: Link) -> None:
    stored = Stored()
    router = CloudRouter(device_id="watch-dev", publish=link.publish, deliver=stored, latency_slo_ms=300)
    link.router = router
    try:
        windows, _predictions, records, edge_labels = edge_batch(10)
        reasons = router.route(windows, None)  # no edge model yet: every window is claimed
        assert reasons == ["no_model"] * 10
        for window, record in zip(windows, records, strict=True):
            router.submit(window, "low_confidence", record)
        wait_for(lambda: len(stored.all()) == 10, what="edge answers after the SLO")
        got = sorted(stored.all(), key=lambda r: r.window_seq or 0)
        assert [r.answered_by for r in got] == ["edge"] * 10
        assert [r.fallback_reason for r in got] == ["low_confidence:timeout"] * 10
        assert [r.label for r in got] == edge_labels
        assert router.pending() == 0
        # A response after the deadline, and one for an id never sent: counted, nothing stored twice.
        late_id = next(iter(router._expired))
        for rid in (late_id, "never-sent"):
            body = InferResponseBody(request_id=rid, label="ABD", score=0.9)
            router.on_response(
                router.response_topic, encode_message(make_envelope("watch-dev", "infer/response", body))
            )
        router.on_response(router.response_topic, b"garbage")
        assert (router.counts["late_responses"], router.counts["unknown_responses"]) == (1, 1)
        assert router.counts["bad_responses"] == 1
        assert len(stored.all()) == 10
    finally:
        router.close()


def test_a_failed_publish_keeps_the_edge_answer_flagged_offline(link: Link) -> None:
    stored = Stored()
    router = CloudRouter(
        device_id="watch-dev",
        publish=lambda topic, payload: "not connected",
        deliver=stored,
        latency_slo_ms=60_000,
    )
    try:
        windows, _, records, _ = edge_batch(3)
        for window, record in zip(windows, records, strict=True):
            router.submit(window, "low_confidence", record)
        assert [r.fallback_reason for r in stored.all()] == ["low_confidence:offline"] * 3
        assert router.pending() == 0
        assert router.counts["offline"] == 3
    finally:
        router.close()


def test_past_max_pending_the_edge_answer_is_kept(link: Link) -> None:
    stored = Stored()
    router = CloudRouter(
        device_id="watch-dev", publish=link.publish, deliver=stored, latency_slo_ms=60_000, max_pending=4
    )
    try:
        windows, _, _records, _ = edge_batch(6)
        reasons = router.route(windows, None)
        assert reasons == ["no_model"] * 4 + [None] * 2
        assert router.counts["queue_full"] == 2
    finally:
        router.close()
    assert stored.all() == []  # nothing was submitted, nothing to hand back
