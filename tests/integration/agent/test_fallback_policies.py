"""The fallback policies and budget end to end in-process: the real watch edge model, a real
Mosquitto, a real cloud inference worker, a real pipeline, drift observer and SQLite store."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.cloud_router import CloudRouter
from edgefleet.agent.config import DriftConfig
from edgefleet.agent.drift_observer import DriftObserver
from edgefleet.agent.fallback_budget import FallbackBudget
from edgefleet.agent.fallback_policy import (
    CapacityPolicy,
    ConfidencePolicy,
    FallbackPolicy,
    OutOfDistributionPolicy,
)
from edgefleet.agent.fallback_signals import PipelineSignals
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.pipeline import Pipeline, PipelineSettings, StreamSpec
from edgefleet.agent.routing import offer
from edgefleet.agent.sources import ReplaySourceConfig, create_source
from edgefleet.agent.store import ResultRecord, Store, StoreConfig
from edgefleet.controller.inference.worker import InferencePool
from edgefleet.runtime.bundle import Bundle, load_bundle
from tests.integration.agent.test_cloud_router import EDGE_BUNDLE, MODELS, Link, Stored, edge_batch
from tests.integration.controller.conftest import wait_for
from tests.integration.controller.inference.test_inference_worker import cloud_answers, start_pool
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.integration


@pytest.fixture
def link(mosquitto: MosquittoBroker) -> Iterator[Link]:
    lk = Link(mosquitto, "watch-dev")
    yield lk
    lk.close()


@pytest.fixture
def pool(mosquitto: MosquittoBroker) -> Iterator[InferencePool]:
    p = start_pool(mosquitto, max_wait_ms=2.0)
    yield p
    p.stop()


def _margin(values: Any) -> float:
    top2 = np.sort(np.asarray(values, dtype=np.float64))[-2:]
    return float(top2[1] - top2[0])


def test_margin_and_entropy_policies_send_their_windows_and_the_cloud_answers(
    link: Link, pool: InferencePool
) -> None:
    stored = Stored()
    router = CloudRouter(
        device_id="watch-dev",
        publish=link.publish,
        deliver=stored,
        policy=ConfidencePolicy(min_confidence=0.0, min_margin=0.5, max_entropy=0.6),
        latency_slo_ms=10_000,
    )
    link.router = router
    try:
        windows, predictions, records, _ = edge_batch(40)
        cloud_labels, _ = cloud_answers(np.stack([w.data for w in windows]))
        keep = offer(router, windows, predictions, records, PipelineCounters())
        narrow = {i for i, p in enumerate(predictions) if _margin(p.values) < 0.5}
        assert 0 < len(narrow) < 40  # the threshold splits the batch
        claimed = set(range(40)) - {r.window_seq for r in keep}
        assert narrow <= claimed
        wait_for(lambda: len(stored.all()) == len(claimed), what="cloud answers")
        by_seq = {r.window_seq: r for r in stored.all()}
        for i in claimed:
            assert by_seq[i].answered_by == "cloud"
            assert by_seq[i].label == cloud_labels[i]
            assert by_seq[i].fallback_reason == ("low_margin" if i in narrow else "high_entropy")
        stats = router.fallback_stats()
        assert stats["reasons"] == {
            k: v for k, v in {"low_margin": len(narrow), "high_entropy": len(claimed - narrow)}.items() if v
        }
        assert stats["sent"] == stats["answered_cloud"] == len(claimed)
        assert 0 < stats["latency_p50_ms"] <= stats["latency_p95_ms"]
    finally:
        router.close()


def test_past_the_request_budget_the_edge_answer_is_kept_flagged(link: Link, pool: InferencePool) -> None:
    stored = Stored()
    router = CloudRouter(
        device_id="watch-dev",
        publish=link.publish,
        deliver=stored,
        policy=ConfidencePolicy(min_confidence=1.01),  # every window is unsure
        latency_slo_ms=10_000,
        budget=FallbackBudget(max_requests_per_min=4),
    )
    link.router = router
    try:
        windows, predictions, records, edge_labels = edge_batch(10)
        assert offer(router, windows, predictions, records, PipelineCounters()) == []
        wait_for(lambda: len(stored.all()) == 10, what="4 cloud answers and 6 edge answers")
        got = sorted(stored.all(), key=lambda r: r.window_seq or 0)
        assert [r.answered_by for r in got] == ["cloud"] * 4 + ["edge"] * 6
        assert [r.fallback_reason for r in got] == ["low_confidence"] * 4 + ["low_confidence:budget"] * 6
        assert [r.label for r in got[4:]] == edge_labels[4:]
        stats = router.fallback_stats()
        assert (stats["sent"], stats["answered_cloud"], stats["budget_refused"]) == (4, 4, 6)
        assert stats["requests_last_min"] == 4
        assert stats["max_requests_per_min"] == 4
        assert stats["max_bytes_per_hour"] == 0
        assert stats["bytes_last_hour"] > 4 * windows[0].data.nbytes  # the raw float32 window and more
        assert stats["reasons"] == {"low_confidence": 10}
    finally:
        router.close()


def test_the_byte_budget_counts_request_payloads(link: Link, pool: InferencePool) -> None:
    windows, predictions, records, _ = edge_batch(6)
    probe = CloudRouter(device_id="watch-dev", publish=link.publish, deliver=Stored(), latency_slo_ms=10_000)
    try:
        probe.submit(windows[5], "low_confidence", records[5])
        one_request = probe.fallback_stats()["bytes_last_hour"]
    finally:
        probe.close()
    assert one_request > windows[5].data.nbytes  # the raw float32 window and its envelope
    stored = Stored()
    router = CloudRouter(
        device_id="watch-dev",
        publish=link.publish,
        deliver=stored,
        policy=ConfidencePolicy(min_confidence=1.01),
        latency_slo_ms=10_000,
        budget=FallbackBudget(max_bytes_per_hour=int(2.5 * one_request)),
    )
    link.router = router
    try:
        offer(router, windows[:5], predictions[:5], records[:5], PipelineCounters())
        wait_for(lambda: len(stored.all()) == 5, what="every window answered")
        got = sorted(stored.all(), key=lambda r: r.window_seq or 0)
        assert [r.fallback_reason for r in got] == ["low_confidence"] * 2 + ["low_confidence:budget"] * 3
        assert [r.answered_by for r in got] == ["cloud"] * 2 + ["edge"] * 3
        stats = router.fallback_stats()
        assert stats["budget_refused"] == 3
        assert one_request * 2 * 0.9 < stats["bytes_last_hour"] <= 2.5 * one_request
    finally:
        router.close()


# --- a real pipeline: the signals come from its model slot, buffers, counters and drift observer


def _shifted_recording(path: Path, shift: float) -> int:
    """Held-out recordings with ``shift`` added to the first channel (accelerometer x)."""
    with np.load(MODELS / "data" / "watch.npz") as d:
        samples, offsets, test = d["samples"], d["offsets"], d["test"]
    chosen = np.flatnonzero(test)[:2]
    data = np.concatenate([samples[offsets[i] : offsets[i + 1]] for i in chosen]).astype(np.float32)
    data[:, 0] += shift
    np.savez(path, samples=data)
    return (len(data) - 100) // 50 + 1


def _results(store: Store) -> list[dict[str, Any]]:
    return store.query_results(limit=100_000)


def _run_pipeline(
    tmp_path: Path,
    link: Link,
    policy: FallbackPolicy,
    *,
    shift: float = 0.0,
    drift: DriftConfig | None = None,
    range_tolerance: float | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any], Store, DriftObserver | None]:
    recording = tmp_path / "watch.npz"
    expected = _shifted_recording(recording, shift)
    store = Store.open(tmp_path / "store.db", StoreConfig(path=tmp_path / "store.db"))
    observer = DriftObserver(drift, store) if drift is not None else None
    counters = PipelineCounters()
    holder: list[Pipeline] = []

    def deliver(records: Sequence[ResultRecord]) -> None:
        holder[0].deliver(records)

    def open_bundle() -> Bundle:
        bundle = load_bundle(EDGE_BUNDLE)
        if observer is not None:
            observer.attach(bundle)
        return bundle

    router = CloudRouter(
        device_id="watch-dev", publish=link.publish, deliver=deliver, policy=policy, latency_slo_ms=10_000
    )
    source = ReplaySourceConfig(name="imu", file=recording, rate_hz=50.0, realtime=False)
    pipeline = Pipeline(
        store=store,
        streams=[StreamSpec(name="imu", make_source=functools.partial(create_source, source))],
        load_bundle=open_bundle,
        settings=PipelineSettings(backpressure="block", max_batch_size=4, write_interval_s=0.05),
        counters=counters,
        observers=[observer] if observer is not None else [],
        router=router,
    )
    holder.append(pipeline)
    router.attach_signals(PipelineSignals(pipeline, counters, observer, range_tolerance=range_tolerance))
    link.router = router
    pipeline.start()
    try:
        wait_for(lambda: len(_results(store)) >= expected, timeout=60, what=f"{expected} results")
        assert router.pending() == 0
    finally:
        router.close()
        pipeline.stop(timeout=10)
    rows = _results(store)
    assert sorted(r["window_seq"] for r in rows) == list(range(expected))  # each window once
    return rows, router.fallback_stats(), store, observer


def test_out_of_range_then_drift_alert_windows_go_to_the_cloud(
    tmp_path: Path, link: Link, pool: InferencePool
) -> None:
    # max_cpu 1: the drift budget must not skip batches on a loaded machine (no alert, no test)
    drift = DriftConfig(windows=8, alert_after=1, clear_after=100, min_samples=100, max_cpu=1.0)
    policy = FallbackPolicy(
        ConfidencePolicy(min_confidence=0.0), OutOfDistributionPolicy(on_drift=True, on_out_of_range=True)
    )
    rows, stats, store, observer = _run_pipeline(
        tmp_path, link, policy, shift=10.0, drift=drift, range_tolerance=0.1
    )
    try:
        assert observer is not None
        assert "acc_x" in observer.drifted_channels()
        reasons = {r["fallback_reason"] for r in rows}
        assert reasons == {"out_of_range", "drift_alert"}, reasons
        assert {r["answered_by"] for r in rows} == {"cloud"}
        by_seq = sorted(rows, key=lambda r: r["window_seq"])
        first_alert = next(i for i, r in enumerate(by_seq) if r["fallback_reason"] == "drift_alert")
        # before the first alert the range catches the shifted windows; once it is on, it wins
        assert {r["fallback_reason"] for r in by_seq[:first_alert]} == {"out_of_range"}
        assert {r["fallback_reason"] for r in by_seq[first_alert:]} == {"drift_alert"}
        assert store.query_events(kind="drift.alert")
        assert stats["reasons"]["drift_alert"] + stats["reasons"]["out_of_range"] == len(rows)
    finally:
        store.close()


def test_windows_within_the_reference_range_keep_the_edge_answer(
    tmp_path: Path, link: Link, pool: InferencePool
) -> None:
    policy = FallbackPolicy(
        ConfidencePolicy(min_confidence=0.0), OutOfDistributionPolicy(on_out_of_range=True)
    )
    rows, stats, store, _ = _run_pipeline(tmp_path, link, policy, range_tolerance=0.5)
    store.close()
    assert {r["answered_by"] for r in rows} == {"edge"}
    assert {r["fallback_reason"] for r in rows} == {None}
    assert stats["sent"] == 0
    assert stats["reasons"] == {}


@pytest.mark.parametrize(
    ("capacity", "reason"),
    [
        # any fill at all (a cut window leaves window_length - hop samples behind) counts as high
        (CapacityPolicy(queue_high_water=1e-9), "queue_high"),
        # any real inference is slower than a nanosecond
        (CapacityPolicy(latency_p95_ms=1e-6), "latency_slo"),
    ],
)
def test_capacity_signals_come_from_the_running_pipeline(
    tmp_path: Path, link: Link, pool: InferencePool, capacity: CapacityPolicy, reason: str
) -> None:
    policy = FallbackPolicy(ConfidencePolicy(min_confidence=0.0), capacity=capacity)
    rows, stats, store, _ = _run_pipeline(tmp_path, link, policy)
    store.close()
    assert {r["fallback_reason"] for r in rows} == {reason}
    assert {r["answered_by"] for r in rows} == {"cloud"}
    assert stats["reasons"] == {reason: len(rows)}


def test_the_running_models_own_thresholds_apply(tmp_path: Path, link: Link, pool: InferencePool) -> None:
    # The default sends nothing; the thresholds of the model the slot holds send every window.
    policy = FallbackPolicy(
        ConfidencePolicy(min_confidence=0.0),
        per_model={"watch-edge-onnx": ConfidencePolicy(min_confidence=1.01), "other": ConfidencePolicy(0.0)},
    )
    rows, stats, store, _ = _run_pipeline(tmp_path, link, policy)
    store.close()
    assert {(r["answered_by"], r["fallback_reason"]) for r in rows} == {("cloud", "low_confidence")}
    assert stats["reasons"] == {"low_confidence": len(rows)}
