"""Capacity offload end to end in-process: a real pipeline on the watch edge model, a real Mosquitto,
a real cloud inference worker (or one that was stopped), a real SQLite store. Windows over capacity
go to the cloud instead of the edge model; the ones the cloud does not answer are given back and
inferred late by the edge, flagged; none is lost or stored twice."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.cloud_router import CloudRouter
from edgefleet.agent.fallback_offload import CapacityOffload
from edgefleet.agent.fallback_policy import CapacityPolicy, ConfidencePolicy, FallbackPolicy
from edgefleet.agent.fallback_signals import PipelineSignals
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.pipeline import Pipeline, PipelineSettings, StreamSpec
from edgefleet.agent.sources import ReplaySourceConfig, create_source
from edgefleet.agent.store import ResultRecord, Store, StoreConfig
from edgefleet.controller.inference.worker import InferencePool
from edgefleet.runtime import Model
from edgefleet.runtime.bundle import Bundle, load_bundle
from tests.integration.agent.test_cloud_router import EDGE_BUNDLE, Link
from tests.integration.agent.test_fallback_policies import _shifted_recording
from tests.integration.controller.conftest import wait_for
from tests.integration.controller.inference.test_inference_worker import start_pool
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.integration

# any fill at all counts as high (a cut window leaves window_length - hop samples behind)
QUEUE_HIGH = CapacityPolicy(queue_high_water=1e-9)


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


class Run:
    """One pipeline with an offloading router over ``link``; the model opens once ``model_ok`` is set."""

    def __init__(
        self,
        tmp_path: Path,
        link: Link,
        capacity: CapacityPolicy,
        *,
        latency_slo_ms: float,
        refresh_s: float = 1.0,
    ) -> None:
        recording = tmp_path / "watch.npz"
        self.expected = _shifted_recording(recording, 0.0)
        self.store = Store.open(tmp_path / "store.db", StoreConfig(path=tmp_path / "store.db"))
        self.counters = PipelineCounters()
        self.model_ok = threading.Event()
        self.model_ok.set()
        self.offloader = CapacityOffload(capacity)
        holder: list[Pipeline] = []

        def deliver(records: Sequence[ResultRecord]) -> None:
            holder[0].deliver(records)

        def open_model(bundle: Bundle) -> Model:
            if not self.model_ok.is_set():
                raise RuntimeError("model not there yet (test)")
            return bundle.open_model()

        self.router = CloudRouter(
            device_id="watch-dev",
            publish=link.publish,
            deliver=deliver,
            policy=FallbackPolicy(ConfidencePolicy(min_confidence=0.0), capacity=capacity),
            latency_slo_ms=latency_slo_ms,
            offloader=self.offloader,
        )
        source = ReplaySourceConfig(name="imu", file=recording, rate_hz=50.0, realtime=False)
        self.pipeline = Pipeline(
            store=self.store,
            streams=[StreamSpec(name="imu", make_source=functools.partial(create_source, source))],
            load_bundle=lambda: load_bundle(EDGE_BUNDLE),
            open_model=open_model,
            settings=PipelineSettings(
                backpressure="block", max_batch_size=4, write_interval_s=0.05, model_retry_s=0.2
            ),
            counters=self.counters,
            router=self.router,
        )
        holder.append(self.pipeline)
        self.router.attach_signals(
            PipelineSignals(
                self.pipeline, self.counters, None, range_tolerance=None, latency_refresh_s=refresh_s
            )
        )
        link.router = self.router

    def results(self) -> list[dict[str, Any]]:
        return self.store.query_results(limit=100_000)

    def finish(self) -> list[dict[str, Any]]:
        """Wait for every window's result, stop, and check each window was stored exactly once."""
        try:
            wait_for(
                lambda: len(self.results()) >= self.expected, timeout=60, what=f"{self.expected} results"
            )
            assert self.router.pending() == 0
        finally:
            self.router.close()
            self.pipeline.stop(timeout=10)
        rows = self.results()
        self.store.close()
        assert sorted(r["window_seq"] for r in rows) == list(range(self.expected))  # each window once
        return rows


def test_windows_over_the_high_water_mark_are_answered_by_the_cloud_instead_of_the_edge(
    tmp_path: Path, link: Link, pool: InferencePool
) -> None:
    run = Run(tmp_path, link, QUEUE_HIGH, latency_slo_ms=10_000)
    run.pipeline.start()
    rows = run.finish()
    assert {(r["answered_by"], r["fallback_reason"]) for r in rows} == {("cloud", "queue_high")}
    # The point of it: the device's model never ran.
    assert run.counters.snapshot().windows_inferred == 0
    stats = run.router.fallback_stats()
    assert stats["offloaded"] == run.expected
    assert stats["given_back"] == 0
    assert stats["reasons"] == {"queue_high": run.expected}


def test_windows_the_stopped_cloud_does_not_answer_are_given_back_to_the_edge(
    tmp_path: Path, link: Link, mosquitto: MosquittoBroker
) -> None:
    start_pool(mosquitto, max_wait_ms=2.0).stop()  # a worker that was there, now stopped
    run = Run(tmp_path, link, QUEUE_HIGH, latency_slo_ms=200)
    run.pipeline.start()
    rows = run.finish()
    assert {(r["answered_by"], r["fallback_reason"]) for r in rows} == {("edge", "queue_high:timeout")}
    assert all(r["label"] is not None for r in rows)
    # Every window was first sent, then inferred late by the edge: exactly once each.
    assert run.counters.snapshot().windows_inferred == run.expected
    stats = run.router.fallback_stats()
    assert stats["timeouts"] == stats["given_back"] == stats["offloaded"] == run.expected
    assert stats["given_back_waiting"] == 0


def test_past_the_budget_an_offloaded_window_is_inferred_by_the_edge_at_once(
    tmp_path: Path, link: Link, pool: InferencePool
) -> None:
    run = Run(tmp_path, link, QUEUE_HIGH, latency_slo_ms=10_000)
    run.router.budget.max_requests_per_min = 5
    run.pipeline.start()
    rows = run.finish()
    answered = {(r["answered_by"], r["fallback_reason"]) for r in rows}
    assert answered == {("cloud", "queue_high"), ("edge", "queue_high:budget")}
    assert sum(r["answered_by"] == "cloud" for r in rows) == 5
    assert run.counters.snapshot().windows_inferred == run.expected - 5


def test_while_the_edge_misses_its_latency_objective_windows_go_to_the_cloud(
    tmp_path: Path, link: Link, pool: InferencePool
) -> None:
    # Any real inference is slower than a nanosecond: once the p95 is measured (after the first
    # batch; re-read every batch here), it is missed.
    run = Run(tmp_path, link, CapacityPolicy(latency_p95_ms=1e-6), latency_slo_ms=10_000, refresh_s=0.0)
    run.pipeline.start()
    rows = run.finish()
    cloud = [r for r in rows if r["answered_by"] == "cloud"]
    edge = [r for r in rows if r["answered_by"] == "edge"]
    assert {r["fallback_reason"] for r in cloud} == {"latency_slo"}
    # the first batch measures the edge (no p95 yet), and one batch a second probes it again
    assert edge
    assert {r["fallback_reason"] for r in edge} == {None}
    assert cloud
    assert run.counters.snapshot().windows_inferred == len(edge)


def test_windows_sent_without_a_model_and_not_answered_wait_for_the_model(
    tmp_path: Path, link: Link, mosquitto: MosquittoBroker
) -> None:
    run = Run(tmp_path, link, CapacityPolicy(), latency_slo_ms=200)  # no capacity test: no_model only
    run.model_ok.clear()
    run.pipeline.start()
    # No worker: every window goes to the cloud as no_model, times out and waits for the model.
    wait_for(lambda: run.offloader.given_back >= run.expected, timeout=60, what="windows given back")
    assert run.results() == []
    run.model_ok.set()
    rows = run.finish()
    assert {(r["answered_by"], r["fallback_reason"]) for r in rows} == {("edge", "no_model:timeout")}
    assert run.counters.snapshot().windows_inferred == run.expected


def test_windows_still_waiting_for_the_cloud_at_shutdown_are_inferred_by_the_draining_edge(
    tmp_path: Path, link: Link
) -> None:
    # No worker and a long objective: every window is still waiting when the agent stops; the
    # router closes first (as the agent service does), then the draining pipeline infers them.
    run = Run(tmp_path, link, QUEUE_HIGH, latency_slo_ms=600_000)
    run.pipeline.start()
    wait_for(lambda: run.offloader.offloaded >= run.expected, timeout=60, what="windows offloaded")
    assert run.results() == []
    run.router.close()
    run.pipeline.stop(timeout=30)
    rows = run.results()
    run.store.close()
    assert sorted(r["window_seq"] for r in rows) == list(range(run.expected))  # each window once
    assert {(r["answered_by"], r["fallback_reason"]) for r in rows} == {("edge", "queue_high:shutdown")}
