"""The share-targeted fallback policy on literal scores (pure logic, no broker)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.agent.cloud_router import policy_from_config
from edgefleet.agent.config import parse_config
from edgefleet.agent.fallback_policy import (
    CapacityPolicy,
    ConfidencePolicy,
    FallbackPolicy,
    Signals,
)
from edgefleet.agent.fallback_share import ShareTarget, uncertainty
from edgefleet.errors import ConfigError
from edgefleet.runtime.bundle import Prediction
from edgefleet.runtime.ringbuffer import Window

pytestmark = pytest.mark.unit

_MINIMAL = '[device]\nid = "d"\n[[sources]]\ntype = "synthetic"\nname = "imu"\n[model]\nbundle = "b"\n'


def _stream(target: ShareTarget, scores: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([target.claim(scores[i : i + batch]) for i in range(0, len(scores), batch)])


@settings(max_examples=40, deadline=None)
@given(
    target=st.floats(0.05, 0.6),
    window=st.integers(50, 400),
    batch=st.integers(1, 40),
    levels=st.sampled_from([None, 4, 16, 256]),
    low=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_long_run_share_is_the_target_on_stationary_input(
    target: float, window: int, batch: int, levels: int | None, low: float, seed: int
) -> None:
    """Whatever the scores' level and spread, continuous or on a few levels (int8 outputs tie)."""
    rng = np.random.default_rng(seed)
    scores = low + (1 - low) * rng.beta(2.0, 5.0, size=4000)
    if levels is not None:
        scores = np.round(scores * levels) / levels
    claims = _stream(ShareTarget(target, window=window), scores, batch)
    assert len(claims) == len(scores)
    assert abs(claims[window:].mean() - target) <= 0.05


def test_it_claims_the_least_confident_of_the_recent_windows() -> None:
    target = ShareTarget(0.25, window=8)
    assert target.claim([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]).tolist() == [False] * 6 + [True] * 2
    assert target.threshold == pytest.approx(0.6)
    # 0.3 was not sent among those; later, among more confident windows, it is.
    assert target.claim([0.01] * 6).tolist() == [False] * 6
    assert target.claim([0.3, 0.01]).tolist() == [True, False]


def test_the_cut_follows_a_shift_in_confidence_levels_where_a_fixed_threshold_does_not() -> None:
    rng = np.random.default_rng(3)
    sure = rng.uniform(0.0, 0.2, 3000)  # a wearer the model is sure about
    unsure = rng.uniform(0.3, 0.6, 3000)  # another one: every score over a fixed cut at 0.25
    claims = _stream(ShareTarget(0.2, window=300), np.concatenate([sure, unsure]), 16)
    assert abs(claims[300:3000].mean() - 0.2) < 0.03
    assert abs(claims[3300:].mean() - 0.2) < 0.03


def test_ties_are_claimed_in_the_proportion_that_meets_the_target() -> None:
    target = ShareTarget(0.3, window=100)
    claims = _stream(target, np.full(1000, 0.5), 10)  # every score the same
    assert claims.mean() == pytest.approx(0.3, abs=0.01)


def test_a_new_model_restarts_the_ring() -> None:
    target = ShareTarget(0.5, window=10)
    target.claim([0.9] * 10, model="a")
    assert target.seen == 10
    assert target.claim([0.1, 0.2], model="b").tolist() == [False, True]
    assert target.seen == 2


def test_shares_zero_and_one_send_nothing_and_everything() -> None:
    assert not ShareTarget(0.0).claim([0.9, 1.0]).any()
    assert ShareTarget(1.0).claim([0.0, 0.1]).all()
    assert ShareTarget(0.5).claim([]).size == 0


@pytest.mark.parametrize(
    ("args", "match"),
    [((1.5,), "outside 0..1"), ((0.2, 0), "at least one score"), ((0.2, 10, "loss"), "unknown uncertainty")],
)
def test_bad_settings_are_refused_with_what_was_expected(args: tuple[object, ...], match: str) -> None:
    share, *rest = args
    kwargs = dict(zip(("window", "score"), rest, strict=False))
    with pytest.raises(ValueError, match=match):
        ShareTarget(share, **kwargs)  # type: ignore[arg-type]


def test_uncertainty_scores_rank_less_sure_outputs_higher() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.5, 0.45, 0.05], [1 / 3, 1 / 3, 1 / 3]])
    assert uncertainty(probs, "confidence").tolist() == pytest.approx([0.1, 0.5, 2 / 3])
    assert uncertainty(probs, "margin").tolist() == pytest.approx([0.15, 0.95, 1.0])
    entropy = uncertainty(probs, "entropy")
    assert entropy[2] == pytest.approx(1.0)
    assert entropy[0] < entropy[1] < entropy[2]
    assert math.isclose(uncertainty([[1.0, 0.0]], "entropy")[0], 0.0, abs_tol=1e-12)


def _window(stream: str = "imu") -> Window:
    return Window(stream, 0, 0.0, 1.0, np.zeros((1, 1), dtype=np.float32), ready_at=0.0)


def _prediction(*probs: float) -> Prediction:
    values = np.array(probs, dtype=np.float32)
    return Prediction(label="x", score=float(values.max()), values=values)


def test_the_share_target_replaces_the_fixed_thresholds_and_keeps_capacity_first() -> None:
    policy = FallbackPolicy(
        ConfidencePolicy(0.99),  # would claim every window below
        capacity=CapacityPolicy(queue_high_water=0.5),
        per_model={"m": ConfidencePolicy(0.99)},
        share=ShareTarget(0.25, window=8, score="margin"),
    )
    windows = [_window("busy")] + [_window() for _ in range(7)]
    predictions = [_prediction(0.9, 0.1)] + [_prediction(0.95 - 0.05 * i, 0.05 + 0.05 * i) for i in range(7)]
    reasons = policy.flags(windows, predictions, Signals(fill={"busy": 0.9}, model_name="m"))
    assert reasons == ["queue_high"] + [None] * 5 + ["least_confident"] * 2
    regression = [Prediction(label="1.5", score=None, values=np.array([1.5], np.float32))]
    assert policy.flags([_window()], regression, Signals()) == [None]


def test_every_share_key_reaches_the_policy() -> None:
    config = parse_config(
        _MINIMAL + '[fallback]\nenabled = true\ntarget_share = 0.25\ntarget_window = 200\nscore = "entropy"\n'
    )
    share = policy_from_config(config.fallback).share
    assert share is not None
    assert (share.target, share.window, share.score) == (0.25, 200, "entropy")
    assert policy_from_config(parse_config(_MINIMAL).fallback).share is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("target_share", "1.5"), ("target_share", "-0.1"), ("target_window", "5"), ("score", '"loss"')],
)
def test_bad_share_values_are_refused_with_the_key_named(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_MINIMAL + f"[fallback]\n{key} = {value}\n")
    assert any(issue.key == f"fallback.{key}" for issue in raised.value.issues), raised.value.issues
