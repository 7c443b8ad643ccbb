"""Capacity offload's pure logic: which windows to send before inference, the latency probe, the
given-back queue and its cap, and the ``[fallback]`` keys that wire it (no broker, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.agent.cloud_router import CloudRouter, router_from_config
from edgefleet.agent.config import parse_config
from edgefleet.agent.fallback_offload import CapacityOffload
from edgefleet.agent.fallback_policy import CapacityPolicy, Signals
from edgefleet.runtime.ringbuffer import Window

pytestmark = pytest.mark.unit

_CONFIG = (
    '[device]\nid = "d"\n[[sources]]\ntype = "synthetic"\nname = "imu"\n[model]\nbundle = "b"\n'
    '[sync]\nenabled = true\nhost = "localhost"\n'
    "[fallback]\nenabled = true\nqueue_high_water = 0.5\ninference_p95_slo_ms = 40\n"
)


def _window(seq: int, stream: str = "imu") -> Window:
    return Window(stream, seq, float(seq), seq + 1.0, np.zeros((4, 2), dtype=np.float32), ready_at=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_only_the_streams_over_their_high_water_mark_are_sent_within_the_room() -> None:
    offload = CapacityOffload(CapacityPolicy(queue_high_water=0.5))
    windows = [_window(0, "a"), _window(1, "b"), _window(2, "a"), _window(3, "a")]
    signals = Signals(fill={"a": 0.9, "b": 0.1})
    assert offload.reasons(windows, signals, room=10) == ["queue_high", None, "queue_high", "queue_high"]
    # the cloud's room is spent: the rest is inferred by the edge
    assert offload.reasons(windows, signals, room=2) == ["queue_high", None, "queue_high", None]


def test_no_model_is_not_offloaded_here() -> None:
    # no_model windows reach the router through the pipeline's no-model path, not before a model call
    offload = CapacityOffload(CapacityPolicy(queue_high_water=0.5))
    assert offload.reasons([_window(0)], Signals(model_active=False), room=10) == [None]


def test_a_missed_latency_objective_still_lets_one_batch_a_period_reach_the_edge() -> None:
    clock = Clock()
    offload = CapacityOffload(CapacityPolicy(latency_p95_ms=10.0), probe_every_s=1.0, clock=clock)
    slow = Signals(latency_p95_ms=50.0)
    batch = [_window(0), _window(1)]
    assert offload.reasons(batch, slow, room=10) == ["latency_slo"] * 2  # the miss starts
    clock.now = 0.5
    assert offload.reasons(batch, slow, room=10) == ["latency_slo"] * 2
    clock.now = 1.0
    assert offload.reasons(batch, slow, room=10) == [None, None]  # the probe
    clock.now = 1.5
    assert offload.reasons(batch, slow, room=10) == ["latency_slo"] * 2
    assert offload.reasons(batch, Signals(latency_p95_ms=5.0), room=10) == [None, None]  # met again
    clock.now = 1.6
    assert offload.reasons(batch, slow, room=10) == ["latency_slo"] * 2  # a new miss: no probe yet


def test_given_back_windows_join_the_next_batch_flagged_and_the_queue_is_capped() -> None:
    offload = CapacityOffload(CapacityPolicy(), max_given_back=2)
    for seq in range(3):
        offload.give_back(_window(seq), f"queue_high:timeout{seq}")
    assert offload.given_back_dropped == 1  # the oldest
    split = offload.merge([_window(10)], None)
    assert split.batch is not None
    assert [w.seq for w in split.batch.windows] == [10, 1, 2]
    assert split.flags == [None, "queue_high:timeout1", "queue_high:timeout2"]
    assert offload.pending_given_back() == 0
    assert offload.merge([], None).batch is None
    assert offload.merge(None, None).batch is None


def test_an_idle_batch_of_given_back_windows_is_resumed_with_its_flags_once() -> None:
    offload = CapacityOffload(CapacityPolicy())
    offload.give_back(_window(7), "no_model:timeout")
    idle = offload.idle()
    assert idle.batch is not None
    assert idle.flags == ["no_model:timeout"]
    assert offload.resume(idle.batch) is idle
    assert offload.resume(idle.batch) is None  # never twice


def test_the_fallback_keys_wire_the_offload() -> None:
    router = router_from_config(parse_config(_CONFIG), publish=lambda t, p: None, deliver=lambda r: None)
    assert router is not None
    try:
        assert router.offloader is not None
        assert router.offloader.capacity == CapacityPolicy(queue_high_water=0.5, latency_p95_ms=40.0)
        assert router.offloader.max_given_back == 4096
        assert router.policy.capacity == CapacityPolicy()  # not judged a second time after inference
    finally:
        router.close()
    config = parse_config(_CONFIG + "offload_capacity = false\ngive_back_max_windows = 8\n")
    router = router_from_config(config, publish=lambda t, p: None, deliver=lambda r: None)
    assert router is not None
    try:
        assert router.offloader is not None  # still holds the no_model windows given back
        assert router.offloader.capacity == CapacityPolicy()
        assert router.offloader.max_given_back == 8
        assert router.policy.capacity == CapacityPolicy(queue_high_water=0.5, latency_p95_ms=40.0)
    finally:
        router.close()


def test_without_a_model_a_saturated_cloud_gives_the_window_back_instead_of_losing_it() -> None:
    published: list[str] = []
    router = CloudRouter(
        device_id="d",
        publish=lambda topic, payload: published.append(topic),
        deliver=lambda records: None,
        max_pending=1,
        latency_slo_ms=60_000,
        offloader=CapacityOffload(CapacityPolicy()),
    )
    try:
        windows = [_window(0), _window(1), _window(2)]
        assert router.route(windows, None) == ["no_model"] * 3  # claimed even past the room
        for window in windows:
            router.submit(window, "no_model", None)
        assert len(published) == 1
        assert router.pending() == 1
        assert router.offloader is not None
        split = router.offload(None)  # the idle pipeline asks for them
        assert split.batch is not None
        assert [w.seq for w in split.batch.windows] == [1, 2]
        assert split.flags == ["no_model:queue_full"] * 2
    finally:
        router.close()
    # closing gives back the one still waiting for the cloud
    assert router.offloader.pending_given_back() == 1


def test_a_backlog_of_given_back_windows_joins_the_batches_a_few_at_a_time() -> None:
    offload = CapacityOffload(CapacityPolicy(), late_per_batch=2)
    for seq in range(5):
        offload.give_back(_window(seq), "queue_high:offline")
    sizes = []
    while (split := offload.merge(None, None)).batch is not None:
        sizes.append(len(split.batch.windows))
    assert sizes == [2, 2, 1]
