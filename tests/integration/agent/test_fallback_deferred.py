"""Deferred escalation against a real Mosquitto, real inference workers and a real SQLite store:
windows the cloud could not answer in time are kept, resent when the link and the budget allow,
and the late cloud answer lands on the same stored result, once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.cloud_router import CloudRouter, Publish
from edgefleet.agent.fallback_deferred import DeferredEscalation
from edgefleet.agent.store import Store, StoreConfig
from edgefleet.agent.store.deferred import DeferredStore
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import InferResponseBody, make_envelope
from tests.integration.agent.test_cloud_router import Link, Stored, edge_batch
from tests.integration.controller.conftest import wait_for
from tests.integration.controller.inference.test_inference_worker import cloud_answers, start_pool
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.integration

DEVICE = "watch-dev"


class Budget:
    """A budget the test opens and closes (helper C's policy implements the same hook)."""

    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.spent: list[int] = []

    def try_spend(self, nbytes: int) -> bool:
        if self.allow:
            self.spent.append(nbytes)
        return self.allow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "store.db"
    with Store.open(path, StoreConfig(path=path, store_raw_outputs=True)) as s:
        yield s


@pytest.fixture
def link(mosquitto: MosquittoBroker) -> Iterator[Link]:
    lk = Link(mosquitto, DEVICE)
    yield lk
    lk.close()


def make_router(
    store: Store, publish: Publish, *, budget: Budget | None = None, slo_ms: float = 300, cap: int = 1 << 20
) -> tuple[CloudRouter, DeferredEscalation, Stored]:
    stored = Stored()
    escalation = DeferredEscalation(
        deferred=DeferredStore(store, max_bytes=cap),
        device_id=DEVICE,
        publish=publish,
        deliver=stored,
        budget=budget,
        interval_s=3600.0,  # the sender thread stores kept windows; the tests resend (send_due)
        retry_after_s=60.0,
    )
    escalation.start()
    router = CloudRouter(
        device_id=DEVICE,
        publish=publish,
        deliver=stored,
        latency_slo_ms=slo_ms,
        deferred=escalation,
    )
    return router, escalation, stored


def results(store: Store) -> dict[int, dict[str, object]]:
    return {int(r["window_seq"]): r for r in store.query_results(limit=1000)}


def submit_all(router: CloudRouter, n: int) -> tuple[np.ndarray, list[str | None]]:
    windows, _, records, edge_labels = edge_batch(n)
    for window, record in zip(windows, records, strict=True):
        router.submit(window, "low_confidence", record)
    return np.stack([w.data for w in windows]), edge_labels


def test_timed_out_windows_get_their_late_cloud_answer_on_the_same_result(
    mosquitto: MosquittoBroker, link: Link, store: Store
) -> None:
    router, escalation, stored = make_router(store, link.publish)
    link.router = router
    try:
        # No worker yet: every live request times out; the edge answers are stored, deferred.
        data, edge_labels = submit_all(router, 8)
        wait_for(lambda: escalation.snapshot().get("kept") == 8, what="8 deferred windows")
        assert stored.all() == []  # stored with their windows, not through the writer
        rows = results(store)
        assert [rows[i]["fallback_outcome"] for i in range(8)] == ["deferred"] * 8
        assert [rows[i]["label"] for i in range(8)] == edge_labels
        assert router.counts["timeout"] == 8

        pool = start_pool(mosquitto, max_wait_ms=2.0)
        try:
            assert escalation.send_due() == 8
            wait_for(lambda: escalation.snapshot().get("late") == 8, what="8 late answers")
        finally:
            pool.stop()
        cloud_labels, _ = cloud_answers(data)
        rows = results(store)
        assert len(rows) == 8 == len(store.query_results(limit=1000))  # nothing stored twice
        for i in range(8):
            assert rows[i]["label"] == edge_labels[i]  # the real-time decision stays the edge's
            assert rows[i]["cloud_label"] == cloud_labels[i]
            assert rows[i]["cloud_model_version"]
            assert rows[i]["late"] is True
            assert rows[i]["fallback_outcome"] == "late"
            assert rows[i]["fallback_reason"] == "low_confidence:timeout"
        updates = [i for i in store.outbox_peek(100) if i.kind == "result_update"]
        assert len(updates) == 8
        assert escalation.deferred.stats().windows == 0

        # The same answer again (a duplicate delivery) is counted, changes nothing.
        late_id = next(iter(router._expired))
        body = InferResponseBody(request_id=late_id, label="SPN", score=0.99, model_version="9")
        router.on_response(
            router.response_topic, encode_message(make_envelope(DEVICE, "infer/response", body))
        )
        assert router.counts["late_responses"] == 1
        assert "SPN" not in {r["cloud_label"] for r in results(store).values()}
        assert len([i for i in store.outbox_peek(100) if i.kind == "result_update"]) == 8
    finally:
        router.close()


def test_a_late_live_answer_is_attached_without_a_resend(
    mosquitto: MosquittoBroker, link: Link, store: Store
) -> None:
    # The worker batches for 3 s, the SLO is 300 ms: every answer arrives after its deadline.
    pool = start_pool(mosquitto, max_wait_ms=3000.0, max_batch_size=64)
    router, escalation, _ = make_router(store, link.publish)
    link.router = router
    try:
        data, _ = submit_all(router, 5)
        wait_for(lambda: escalation.snapshot().get("late") == 5, what="5 late live answers")
        assert escalation.snapshot().get("resent", 0) == 0
        cloud_labels, _ = cloud_answers(data)
        rows = results(store)
        assert [rows[i]["cloud_label"] for i in range(5)] == cloud_labels
        assert router.counts["late_responses"] == router.counts["unknown_responses"] == 0
    finally:
        router.close()
        pool.stop()


def test_a_worker_crashing_mid_batch_leaves_windows_deferred_then_answered(
    mosquitto: MosquittoBroker, link: Link, store: Store
) -> None:
    crashed = start_pool(mosquitto, max_wait_ms=10_000.0, max_batch_size=64)
    router, escalation, stored = make_router(store, link.publish)
    link.router = router
    try:
        submit_all(router, 4)
        worker = crashed.workers[0]
        wait_for(lambda: worker.stats.received == 4, what="the worker to hold the batch")
        # The crash: the process dies with the batch in memory and its connection gone, unanswered.
        with worker._cond:
            worker._pending.clear()
        worker.client.loop_stop()
        sock = worker.client.socket()
        assert sock is not None
        sock.close()
        wait_for(lambda: escalation.snapshot().get("kept") == 4, what="the timeouts")
        assert router.counts["timeout"] == 4
        assert stored.all() == []
        fresh = start_pool(mosquitto, max_wait_ms=2.0)
        try:
            assert escalation.send_due() == 4
            wait_for(lambda: escalation.snapshot().get("late") == 4, what="answers from the new worker")
        finally:
            fresh.stop()
        assert len(store.query_results(limit=100)) == 4
    finally:
        router.close()


def test_offline_and_over_budget_windows_wait_until_both_allow(link: Link, store: Store) -> None:
    down = threading.Event()
    down.set()

    def publish(topic: str, payload: bytes) -> str | None:
        return "not connected to the broker" if down.is_set() else link.publish(topic, payload)

    budget = Budget(allow=False)
    router, escalation, _ = make_router(store, publish, budget=budget, slo_ms=60_000)
    link.router = router
    try:
        submit_all(router, 3)  # offline at once: kept, not waiting for the SLO
        assert router.counts["offline"] == 3
        wait_for(lambda: escalation.snapshot().get("kept") == 3, what="3 kept windows")
        rows = results(store)
        assert [rows[i]["fallback_reason"] for i in range(3)] == ["low_confidence:offline"] * 3
        assert escalation.send_due() == 0  # over budget: nothing is even tried
        assert escalation.snapshot()["budget_wait"] == 1
        assert budget.spent == []
        budget.allow = True
        assert escalation.send_due() == 0  # the budget allows, the link is still down
        assert escalation.snapshot()["offline"] == 1
        assert [w.attempts for w in escalation.deferred.due(limit=10)] == [0, 0, 0]
        down.clear()
        assert escalation.send_due() == 3
        assert len(budget.spent) == 4
        assert all(n > 2400 for n in budget.spent)
        assert escalation.deferred.due(limit=10) == []  # sent: not due again before retry_after_s
    finally:
        router.close()


def test_bad_responses_are_counted_and_change_nothing(link: Link, store: Store) -> None:
    router, escalation, _ = make_router(store, lambda t, p: "offline")
    try:
        submit_all(router, 2)
        escalation.flush()
        before = store.query_results(limit=10)
        topic = router.response_topic
        router.on_response(topic, b"\x00not a message")
        router.on_response(topic, b"x" * (300 * 1024))  # over the 256 KiB a response may have
        wrong_device = make_envelope(
            "other-dev", "infer/response", InferResponseBody(request_id="x", label="A")
        )
        router.on_envelope(wrong_device)
        assert router.counts["bad_responses"] == 3
        unknown = InferResponseBody(request_id="deferred-999-abc", label="A", score=0.5)
        router.on_response(topic, encode_message(make_envelope(DEVICE, "infer/response", unknown)))
        assert router.counts["unknown_responses"] == 1
        # A refusal for a deferred window keeps it for the next try.
        [waiting, _] = escalation.deferred.due(limit=10)
        refusal = InferResponseBody(request_id=waiting.request_id, error="model failed")
        router.on_response(topic, encode_message(make_envelope(DEVICE, "infer/response", refusal)))
        assert escalation.snapshot()["cloud_error"] == 1
        assert escalation.deferred.stats().windows == 2
        assert store.query_results(limit=10) == before
    finally:
        router.close()


def test_with_a_zero_cap_nothing_is_kept_and_the_edge_answer_goes_the_usual_way(
    link: Link, store: Store
) -> None:
    router, escalation, stored = make_router(store, lambda t, p: "offline", cap=0)
    try:
        submit_all(router, 2)
        assert [r.fallback_reason for r in stored.all()] == ["low_confidence:offline"] * 2
        assert escalation.snapshot().get("kept", 0) == 0
        assert store.query_results(limit=10) == []
    finally:
        router.close()


def test_the_broker_going_away_keeps_windows_until_it_is_back(
    mosquitto: MosquittoBroker, store: Store
) -> None:
    link = Link(mosquitto, DEVICE)
    topic = f"edgefleet/v1/{DEVICE}/infer/response"
    link.client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)  # again after a reconnect
    link.client.reconnect_delay_set(min_delay=1, max_delay=1)
    pool = start_pool(mosquitto, max_wait_ms=2.0)
    router, escalation, stored = make_router(store, link.publish)
    escalation.retry_after_s = 1.0  # resend until answered: answers to earlier tries only count
    link.router = router
    try:
        mosquitto.kill()
        wait_for(lambda: not link.client.is_connected(), what="the device to notice")
        submit_all(router, 4)  # the publish fails, or the request dies with the broker: kept either way
        wait_for(lambda: escalation.snapshot().get("kept") == 4, what="4 kept windows")
        assert escalation.send_due() == 0
        assert escalation.snapshot()["offline"] == 1
        mosquitto.start()
        wait_for(lambda: link.client.is_connected(), what="the device to reconnect")
        assert pool.wait_ready(15)

        def answered() -> bool:
            escalation.send_due()
            return escalation.snapshot().get("late") == 4

        wait_for(answered, timeout=30, what="late answers after the broker came back")
        rows = results(store)
        assert len(store.query_results(limit=100)) == 4  # nothing lost, nothing stored twice
        assert {rows[i]["fallback_outcome"] for i in range(4)} == {"late"}
        assert stored.all() == []
        assert len([i for i in store.outbox_peek(100) if i.kind == "result_update"]) == 4
    finally:
        router.close()
        pool.stop()
        link.close()


def test_windows_the_store_refuses_keep_their_edge_answer(tmp_path: Path) -> None:
    path = tmp_path / "refusing.db"
    store = Store.open(path, StoreConfig(path=path))
    router, escalation, stored = make_router(store, lambda t, p: "offline")
    try:
        store.close()  # every write now fails with a StoreError
        submit_all(router, 2)
        wait_for(lambda: len(stored.all()) == 2, what="the edge answers handed to the writer")
        assert [r.fallback_reason for r in stored.all()] == ["low_confidence:offline"] * 2
        assert escalation.snapshot()["store_errors"] >= 1
        assert escalation.snapshot().get("kept", 0) == 0
    finally:
        router.close()
