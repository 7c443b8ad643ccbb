"""``fallback.target_share`` through the router: the real watch edge model's answers, a real
Mosquitto, a real cloud inference worker; the windows claimed are the least confident share."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from edgefleet.agent.cloud_router import CloudRouter, policy_from_config
from edgefleet.agent.config import parse_config
from edgefleet.agent.fallback_budget import FallbackBudget
from edgefleet.agent.fallback_policy import probabilities
from edgefleet.agent.fallback_share import ShareTarget, uncertainty
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.routing import offer
from edgefleet.controller.inference.worker import InferencePool
from tests.integration.agent.test_cloud_router import Link, Stored, edge_batch
from tests.integration.controller.conftest import wait_for
from tests.integration.controller.inference.test_inference_worker import cloud_answers, start_pool
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.integration

_CONFIG = (
    '[device]\nid = "watch-dev"\n[[sources]]\ntype = "synthetic"\nname = "imu"\n[model]\nbundle = "b"\n'
    '[fallback]\nenabled = true\ntarget_share = 0.25\ntarget_window = 100\nscore = "margin"\n'
    "min_confidence = 0.99\n"  # replaced by the share target: would send nearly everything
)


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


def test_the_configured_share_of_least_confident_windows_is_answered_by_the_cloud(
    link: Link, pool: InferencePool
) -> None:
    stored = Stored()
    config = parse_config(_CONFIG)
    router = CloudRouter(
        device_id="watch-dev",
        publish=link.publish,
        deliver=stored,
        policy=policy_from_config(config.fallback),
        latency_slo_ms=10_000,
    )
    link.router = router
    try:
        windows, predictions, records, edge_labels = edge_batch(140)
        cloud_labels, _ = cloud_answers(np.stack([w.data for w in windows]))
        kept = []
        for i in range(0, 140, 14):  # batches as the pipeline forms them
            kept += offer(
                router, windows[i : i + 14], predictions[i : i + 14], records[i : i + 14], PipelineCounters()
            )
        claimed = set(range(140)) - {r.window_seq for r in kept}
        # The same rule run apart on the model's margins picks the same windows.
        margins = uncertainty(probabilities(np.stack([p.values for p in predictions])), "margin")
        reference = ShareTarget(0.25, window=100, score="margin")
        expected = np.concatenate([reference.claim(margins[i : i + 14]) for i in range(0, 140, 14)])
        assert claimed == set(np.flatnonzero(expected).tolist())
        assert 0.2 <= len(claimed) / 140 <= 0.3
        # Claimed windows are less sure than the rest, on average by a wide margin.
        assert margins[sorted(claimed)].mean() > margins[np.logical_not(expected)].mean() + 0.2
        wait_for(lambda: len(stored.all()) == len(claimed), what="cloud answers")
        by_seq = {r.window_seq: r for r in stored.all()}
        assert set(by_seq) == claimed
        for i in claimed:
            assert (by_seq[i].answered_by, by_seq[i].fallback_reason) == ("cloud", "least_confident")
            assert by_seq[i].label == cloud_labels[i]
        assert {r.window_seq: r.label for r in kept} == {
            i: edge_labels[i] for i in range(140) if i not in claimed
        }
        stats = router.fallback_stats()
        assert stats["reasons"] == {"least_confident": len(claimed)}
        assert stats["sent"] == stats["answered_cloud"] == len(claimed)
    finally:
        router.close()


def test_with_a_budget_the_share_is_sent_until_the_budget_is_spent(link: Link, pool: InferencePool) -> None:
    stored = Stored()
    router = CloudRouter(
        device_id="watch-dev",
        publish=link.publish,
        deliver=stored,
        policy=policy_from_config(parse_config(_CONFIG).fallback),
        latency_slo_ms=10_000,
        budget=FallbackBudget(max_requests_per_min=5),
    )
    link.router = router
    try:
        windows, predictions, records, _ = edge_batch(80)
        kept = offer(router, windows, predictions, records, PipelineCounters())
        claimed = 80 - len(kept)
        assert claimed == 20  # a quarter of one batch of 80
        wait_for(lambda: len(stored.all()) == claimed, what="5 cloud answers and 15 edge answers")
        reasons = sorted(r.fallback_reason or "" for r in stored.all())
        assert reasons == ["least_confident"] * 5 + ["least_confident:budget"] * 15
        assert sum(r.answered_by == "cloud" for r in stored.all()) == 5
    finally:
        router.close()
