"""Cross-channel drift statistics (scale, swap) against direct numpy references (hypothesis)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.runtime.drift_cross import correlation_from_moments, scale_scores, swap_scores
from edgefleet.runtime.drift_stats import BinCounter, score_counts
from edgefleet.runtime.profile import ReferenceProfile, correlation_matrix, reference_profile

seeds = st.integers(min_value=0, max_value=2**32 - 1)
NAMES = ["a", "b", "c", "d", "e"]
# Five channels with distinct correlations, like the axes of one sensor.
MIXING = np.array(
    [
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.8, 0.6, 0.0, 0.0, 0.0],
        [-0.3, 0.5, 0.8, 0.0, 0.0],
        [0.0, -0.7, 0.2, 0.7, 0.0],
        [0.5, 0.0, -0.6, 0.1, 0.6],
    ]
)


def _data(seed: int, n: int) -> np.ndarray:
    data: np.ndarray = np.random.default_rng(seed).normal(size=(n, 5)) @ MIXING.T
    return data


def _profile(seed: int = 99) -> ReferenceProfile:
    return reference_profile(_data(seed, 20_000).reshape(-1, 1, 5), NAMES, bins=20)


def _scores(
    profile: ReferenceProfile, live: np.ndarray
) -> list[tuple[float | None, float | None, str | None]]:
    counter = BinCounter(profile)
    counter.add_samples(live)
    return [(c.scale, c.swap, c.swap_with) for c in score_counts(profile, counter.counts).channels]


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(2, 3000))
def test_correlation_from_merged_moments_equals_numpy_corrcoef(seed: int, n: int) -> None:
    profile = _profile()
    live = _data(seed, n) * np.array([1.0, 2.0, 0.5, 3.0, 1.0]) + 4.0
    halves = BinCounter(profile), BinCounter(profile)
    halves[0].add_samples(live[: n // 2])
    halves[1].add_samples(live[n // 2 :])
    merged = halves[0].take() + halves[1].take()
    assert merged.moments is not None
    corr, valid = correlation_from_moments(merged.moments)
    assert valid.all()
    assert corr == pytest.approx(np.corrcoef(live.T), abs=1e-6)
    assert corr == pytest.approx(correlation_matrix(live), abs=1e-6)


def test_rows_with_a_nan_are_left_out_of_the_moments_and_constant_channels_are_not_valid() -> None:
    profile = _profile()
    live = _data(1, 500)
    live[:, 2] = 7.0  # constant
    live[10, 0] = np.nan
    counter = BinCounter(profile)
    counter.add_samples(live)
    assert counter.counts.moments is not None
    assert counter.counts.moments[0, 0] == 499
    corr, valid = correlation_from_moments(counter.counts.moments)
    assert valid.tolist() == [True, True, False, True, True]
    assert corr[2].tolist() == [0.0] * 5
    kept = np.delete(live, 10, axis=0)
    assert corr[0, 1] == pytest.approx(np.corrcoef(kept[:, 0], kept[:, 1])[0, 1], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    stds=st.lists(st.floats(1e-6, 1e3), min_size=3, max_size=8),
    data=st.data(),
)
def test_scale_is_the_log_std_ratio_minus_the_channels_median(stds: list[float], data: st.DataObject) -> None:
    refs = data.draw(st.lists(st.floats(1e-3, 1e3), min_size=len(stds), max_size=len(stds)))
    logs = np.log(np.maximum(stds, 1e-3 * np.array(refs)) / np.array(refs))
    expected = np.abs(logs - np.median(logs))
    assert scale_scores(stds, refs) == pytest.approx(list(expected), abs=1e-9)


def test_scale_needs_three_channels_with_a_spread() -> None:
    assert scale_scores([1.0, 2.0], [1.0, 1.0]) == [None, None]
    assert scale_scores([1.0, None, 2.0, 3.0], [1.0, 1.0, 0.0, 1.0]) == [None, None, None, None]
    assert scale_scores([1.0, 2.0, None, 4.0], [1.0, 1.0, 1.0, 1.0]) == pytest.approx(
        [math.log(2), 0.0, None, math.log(2)]
    )
    # a dead channel is floored at 1e-3 of the reference spread, not infinite
    dead = scale_scores([0.0, 1.0, 1.0, 1.0], [2.0, 1.0, 1.0, 1.0])[0]
    assert dead == pytest.approx(-math.log(1e-3))


def test_a_common_change_of_spread_moves_no_channel_and_a_gain_on_one_moves_only_it() -> None:
    profile = _profile()
    live = _data(5, 5000)
    assert all(s is not None and s < 0.05 for s, _, _ in _scores(profile, live * 3.0))
    gained = live.copy()
    gained[:, 3] *= 1.5
    scales = [s for s, _, _ in _scores(profile, gained)]
    assert scales[3] == pytest.approx(math.log(1.5), abs=0.05)
    assert all(s is not None and s < 0.05 for i, s in enumerate(scales) if i != 3)


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(range(5), 2)))
def test_swap_names_exactly_the_two_exchanged_channels(a: int, b: int) -> None:
    profile = _profile()
    live = _data(7, 5000)
    clean = _scores(profile, live)
    assert all(swap is not None and swap < 0.05 for _, swap, _ in clean)
    live[:, [a, b]] = live[:, [b, a]]
    scores = _scores(profile, live)
    assert scores[a][1:] == (scores[b][1], NAMES[b])
    assert scores[b][2] == NAMES[a]
    gain = scores[a][1]
    assert gain is not None
    assert gain > 0.3
    others = [swap for i, (_, swap, _) in enumerate(scores) if i not in (a, b)]
    assert all(s is not None and s < 0.05 for s in others)


def test_swap_is_none_without_a_reference_correlation_or_with_fewer_than_four_live_channels() -> None:
    profile = _profile()
    live = _data(3, 2000)
    old = profile.model_copy(update={"correlation": None})
    assert [swap for _, swap, _ in _scores(old, live)] == [None] * 5
    live[:, 0] = 0.0
    live[:, 1] = 1.0
    assert [swap for _, swap, _ in _scores(profile, live)] == [None] * 5
    corr = np.eye(4)
    assert swap_scores(corr, corr, np.array([True, True, True, False])) == [(None, None)] * 4


def test_the_reference_correlation_is_validated() -> None:
    profile = _profile()
    with pytest.raises(ValueError, match="5 x 5 matrix"):
        ReferenceProfile.model_validate({**profile.model_dump(), "correlation": [[1.0]]})
    bad = [[2.0] * 5 for _ in range(5)]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ReferenceProfile.model_validate({**profile.model_dump(), "correlation": bad})
