"""The fallback policies on literal predictions, windows and signals (pure logic, no broker)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgefleet.agent.cloud_router import policy_from_config
from edgefleet.agent.config import parse_config
from edgefleet.agent.fallback_policy import (
    CapacityPolicy,
    ChannelRanges,
    ConfidencePolicy,
    FallbackPolicy,
    OutOfDistributionPolicy,
    Signals,
    probabilities,
)
from edgefleet.runtime.bundle import Prediction
from edgefleet.runtime.profile import reference_profile
from edgefleet.runtime.ringbuffer import Window

pytestmark = pytest.mark.unit


def _prediction(*probs: float) -> Prediction:
    values = np.array(probs, dtype=np.float32)
    return Prediction(label="x", score=float(values.max()), values=values)


def _window(data: list[list[float]], stream: str = "imu") -> Window:
    return Window(stream, 0, 0.0, 1.0, np.array(data, dtype=np.float32), ready_at=0.0)


def test_low_confidence_is_the_top_probability_under_its_threshold() -> None:
    policy = ConfidencePolicy(min_confidence=0.6)
    assert policy.reason(_prediction(0.55, 0.45)) == "low_confidence"
    assert policy.reason(_prediction(0.6, 0.4)) is None
    assert policy.reason(None) == "no_model"


def test_low_margin_uses_the_top_two_probabilities_even_from_logits() -> None:
    policy = ConfidencePolicy(min_confidence=0.0, min_margin=0.3)
    assert policy.reason(_prediction(0.6, 0.35, 0.05)) == "low_margin"
    assert policy.reason(_prediction(0.7, 0.2, 0.1)) is None
    # logits 2, 1.9, -3: softmax top-2 differ by ~0.05 although the raw values differ by 0.1 and 4.9
    logits = Prediction("x", None, np.array([2.0, 1.9, -3.0], dtype=np.float32))
    assert policy.reason(logits) == "low_margin"
    assert probabilities(np.array([2.0, 1.9, -3.0], dtype=np.float32)).sum() == pytest.approx(1.0)


def test_high_entropy_is_normalized_by_the_number_of_classes() -> None:
    policy = ConfidencePolicy(min_confidence=0.0, max_entropy=0.9)
    assert policy.reason(_prediction(0.25, 0.25, 0.25, 0.25)) == "high_entropy"  # entropy 1.0
    assert policy.reason(_prediction(0.97, 0.01, 0.01, 0.01)) is None
    p = np.array([0.5, 0.3, 0.2])
    entropy = float(-(p * np.log(p)).sum() / math.log(3))  # ~0.94
    assert ConfidencePolicy(0.0, max_entropy=entropy - 0.01).reason(_prediction(*p)) == "high_entropy"
    assert ConfidencePolicy(0.0, max_entropy=entropy + 0.01).reason(_prediction(*p)) is None


def test_a_regression_output_has_no_confidence_to_judge() -> None:
    policy = ConfidencePolicy(min_confidence=0.9, min_margin=0.5, max_entropy=0.1)
    assert policy.reason(Prediction(None, None, np.array([3.2], dtype=np.float32))) is None


def test_ranges_widen_the_reference_by_the_tolerance() -> None:
    reference = reference_profile(np.array([[[0.0, 10.0], [1.0, 20.0]]], dtype=np.float32), ["a", "b"])
    ranges = ChannelRanges.from_profile(reference, tolerance=0.1)  # a: [-0.1, 1.1], b: [9, 21]
    assert not ranges.outside(np.array([[1.05, 20.5], [-0.05, 9.5]], dtype=np.float32))
    assert ranges.outside(np.array([[1.2, 15.0]], dtype=np.float32))
    assert ranges.outside(np.array([[0.5, 8.0]], dtype=np.float32))
    assert not ranges.outside(np.zeros((3, 5), dtype=np.float32))  # other channels: not judged


def test_out_of_distribution_reasons_follow_their_switches() -> None:
    ranges = ChannelRanges(np.array([0.0], np.float32), np.array([1.0], np.float32))
    outside = _window([[2.0]])
    drifting = Signals(drifted_channels=frozenset({"acc_x"}), ranges=ranges)
    assert OutOfDistributionPolicy().reason(outside, drifting) is None
    assert OutOfDistributionPolicy(on_drift=True).reason(outside, drifting) == "drift_alert"
    assert OutOfDistributionPolicy(on_out_of_range=True).reason(outside, drifting) == "out_of_range"
    assert OutOfDistributionPolicy(on_out_of_range=True).reason(_window([[0.5]]), drifting) is None
    assert OutOfDistributionPolicy(True, True).reason(_window([[0.5]]), Signals(ranges=ranges)) is None


def test_capacity_reasons_read_the_windows_stream_fill_and_the_latency() -> None:
    policy = CapacityPolicy(queue_high_water=0.8, latency_p95_ms=50.0)
    busy = Signals(fill={"imu": 0.85, "other": 0.1}, latency_p95_ms=10.0)
    assert policy.reason(_window([[0.0]], "imu"), busy) == "queue_high"
    assert policy.reason(_window([[0.0]], "other"), busy) is None
    assert policy.reason(_window([[0.0]]), Signals(latency_p95_ms=51.0)) == "latency_slo"
    assert policy.reason(_window([[0.0]]), Signals(latency_p95_ms=None)) is None
    assert policy.reason(_window([[0.0]]), Signals(model_active=False)) == "no_model"
    assert CapacityPolicy().reason(_window([[0.0]]), Signals(fill={"imu": 1.0}, latency_p95_ms=1e9)) is None


def test_capacity_comes_before_distribution_before_confidence() -> None:
    policy = FallbackPolicy(
        ConfidencePolicy(0.9),
        OutOfDistributionPolicy(on_drift=True),
        CapacityPolicy(queue_high_water=0.5),
    )
    unsure = _prediction(0.5, 0.5)
    window = _window([[0.0]])
    assert policy.reason(window, unsure, Signals()) == "low_confidence"
    assert policy.reason(window, unsure, Signals(drifted_channels=frozenset({"a"}))) == "drift_alert"
    full = Signals(drifted_channels=frozenset({"a"}), fill={"imu": 0.6})
    assert policy.reason(window, unsure, full) == "queue_high"
    assert policy.reason(window, None, Signals()) == "no_model"
    assert policy.reason(window, _prediction(0.95, 0.05), Signals()) is None


def test_every_fallback_key_reaches_its_policy() -> None:
    config = parse_config(
        '[device]\nid = "d"\n[[sources]]\ntype = "synthetic"\nname = "imu"\n[model]\nbundle = "b"\n'
        "[fallback]\nenabled = true\nmin_confidence = 0.7\nmin_margin = 0.2\nmax_entropy = 0.8\n"
        "on_drift = true\nrange_tolerance = 0.05\nqueue_high_water = 0.75\ninference_p95_slo_ms = 40\n"
    )
    policy = policy_from_config(config.fallback)
    assert policy.confidence == ConfidencePolicy(0.7, 0.2, 0.8)
    assert policy.ood == OutOfDistributionPolicy(on_drift=True, on_out_of_range=True)
    assert policy.capacity == CapacityPolicy(queue_high_water=0.75, latency_p95_ms=40.0)
    quiet = policy_from_config(parse_config(_MINIMAL).fallback)
    assert quiet.ood == OutOfDistributionPolicy()
    assert quiet.capacity == CapacityPolicy()


def test_a_models_own_thresholds_replace_the_defaults_for_that_model_only() -> None:
    config = parse_config(
        _MINIMAL + "[fallback]\nmin_confidence = 0.6\nmin_margin = 0.1\n"
        '[fallback.models."watch-edge-onnx"]\nmin_confidence = 0.8\n'
        '[fallback.models."other"]\nmax_entropy = 0.5\n'
    )
    policy = policy_from_config(config.fallback)
    assert policy.per_model == {
        "watch-edge-onnx": ConfidencePolicy(0.8, 0.1, 1.0),  # unset keys come from [fallback]
        "other": ConfidencePolicy(0.6, 0.1, 0.5),
    }
    window, unsure = _window([[0.0]]), _prediction(0.7, 0.3)
    assert policy.reason(window, unsure, Signals(model_name="watch-edge-onnx")) == "low_confidence"
    assert policy.reason(window, unsure, Signals(model_name="basicmotions-edge")) is None
    assert policy.reason(window, unsure, Signals()) is None


_MINIMAL = '[device]\nid = "d"\n[[sources]]\ntype = "synthetic"\nname = "imu"\n[model]\nbundle = "b"\n'


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("min_margin", "1.5"),
        ("max_entropy", "-0.1"),
        ("range_tolerance", "-1"),
        ("queue_high_water", "0"),
        ("queue_high_water", "1.2"),
        ("inference_p95_slo_ms", "0"),
        ("max_requests_per_min", "0"),
        ("max_bytes_per_hour", "-5"),
        ('models."m".min_confidence', "2"),
    ],
)
def test_bad_fallback_values_are_refused_with_the_key_named(key: str, value: str) -> None:
    from edgefleet.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        parse_config(_MINIMAL + f"[fallback]\n{key} = {value}\n")
    assert any(issue.key == f"fallback.{key}".replace('"', "") for issue in raised.value.issues), (
        raised.value.issues
    )


def test_a_batch_is_judged_window_by_window_as_single_windows_are() -> None:
    policy = FallbackPolicy(
        ConfidencePolicy(0.5, min_margin=0.2, max_entropy=0.9),
        OutOfDistributionPolicy(on_out_of_range=True),
        CapacityPolicy(queue_high_water=0.5),
    )
    ranges = ChannelRanges(np.array([0.0], np.float32), np.array([1.0], np.float32))
    signals = Signals(ranges=ranges, fill={"busy": 0.9})
    windows = [
        _window([[0.5]], "busy"),  # queue_high wins over everything below
        _window([[3.0]]),  # out_of_range
        _window([[0.5]]),  # low_confidence
        _window([[0.5]]),  # low_margin
        _window([[0.5]]),  # high_entropy
        _window([[0.5]]),  # sure
    ]
    predictions = [
        _prediction(0.3, 0.3, 0.4),
        _prediction(0.9, 0.05, 0.05),
        _prediction(0.45, 0.35, 0.2),
        _prediction(0.55, 0.4, 0.05),
        _prediction(0.5, 0.25, 0.25),  # entropy 0.946
        _prediction(0.9, 0.05, 0.05),
    ]
    expected = ["queue_high", "out_of_range", "low_confidence", "low_margin", "high_entropy", None]
    assert policy.flags(windows, predictions, signals) == expected
    single = [policy.reason(w, p, signals) for w, p in zip(windows, predictions, strict=True)]
    assert single == expected
    assert policy.flags(windows, None, signals) == ["no_model"] * 6
    assert policy.flags(windows, predictions, Signals(model_active=False)) == ["no_model"] * 6
