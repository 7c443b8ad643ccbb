"""Drift statistics against scipy / direct numpy references on the same data (hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats  # type: ignore[import-untyped]
from scipy.spatial import distance  # type: ignore[import-untyped]

from edgefleet.runtime.drift_stats import (
    BinCounter,
    DriftCounts,
    ReferenceArrays,
    coarsen,
    js_distance,
    ks_error_bound,
    ks_statistic,
    score_counts,
)
from edgefleet.runtime.profile import (
    CONFIDENCE_EDGES,
    ChannelProfile,
    ReferenceProfile,
    histogram,
    output_profile,
    population_stability_index,
    reference_profile,
)

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _profile(ref: np.ndarray, bins: int = 100) -> ReferenceProfile:
    return reference_profile(
        ref.reshape(-1, 1, ref.shape[-1]), [f"c{i}" for i in range(ref.shape[-1])], bins=bins
    )


def _live(seed: int, n: int, shift: float, scale: float, channels: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, scale, size=(n, channels))


@settings(max_examples=40, deadline=None)
@given(
    seed=seeds,
    n_ref=st.integers(2000, 6000),
    n_live=st.integers(300, 3000),
    shift=st.floats(-2.0, 2.0),
    scale=st.floats(0.3, 3.0),
)
def test_binned_ks_stays_within_its_bound_and_002_of_scipy_exact(
    seed: int, n_ref: int, n_live: int, shift: float, scale: float
) -> None:
    ref = np.random.default_rng(seed + 1).normal(size=(n_ref, 1))
    live = _live(seed, n_live, shift, scale, channels=1)
    profile = _profile(ref)
    counter = BinCounter(profile)
    counter.add_samples(live)
    ref_hist = np.asarray(profile.channels[0].histogram)
    live_hist = counter.counts.bins[0] / n_live
    binned = ks_statistic(ref_hist, live_hist)
    exact = stats.ks_2samp(ref[:, 0], live[:, 0]).statistic
    assert binned <= exact + 1e-6  # the binned CDF gap is the exact gap at a subset of points
    assert exact - binned <= ks_error_bound(ref_hist, live_hist) + 1e-6
    assert abs(exact - binned) <= 0.02


def test_binned_ks_of_a_stuck_sensor_is_close_to_exact() -> None:
    ref = np.random.default_rng(0).normal(size=(5000, 1))
    live = np.full((800, 1), 0.3)
    profile = _profile(ref)
    counter = BinCounter(profile)
    counter.add_samples(live)
    binned = ks_statistic(profile.channels[0].histogram, counter.counts.bins[0])
    assert binned == pytest.approx(stats.ks_2samp(ref[:, 0], live[:, 0]).statistic, abs=0.02)


@settings(max_examples=40, deadline=None)
@given(p=st.lists(st.floats(0.0, 10.0), min_size=2, max_size=30), data=st.data())
def test_js_distance_matches_scipy(p: list[float], data: st.DataObject) -> None:
    q = data.draw(st.lists(st.floats(0.0, 10.0), min_size=len(p), max_size=len(p)))
    if sum(p) <= 0 or sum(q) <= 0:
        with pytest.raises(ValueError, match="empty"):
            js_distance(p, q)
        return
    assert js_distance(p, q) == pytest.approx(float(distance.jensenshannon(p, q, base=2)), abs=1e-9)
    assert 0.0 <= js_distance(p, q) <= 1.0 + 1e-12


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(1, 2000), shift=st.floats(-3, 3))
def test_counts_and_moments_match_a_direct_numpy_reference(seed: int, n: int, shift: float) -> None:
    ref = np.random.default_rng(seed + 7).normal(size=(3000, 3))
    profile = _profile(ref, bins=20)
    live = _live(seed, n, shift, 1.5, channels=3)
    counter = BinCounter(profile)
    counter.add_samples(live)
    scores = score_counts(profile, counter.counts)
    for c, channel in enumerate(profile.channels):
        expected_fractions = histogram(live[:, c], channel.bin_edges)
        assert counter.counts.bins[c] / n == pytest.approx(expected_fractions, abs=1e-6)
        score = scores.channels[c]
        assert score.mean == pytest.approx(live[:, c].mean(), abs=1e-9)
        assert score.std == pytest.approx(live[:, c].std(), abs=1e-6)
        ref_h, live_h = coarsen(channel.histogram), coarsen(counter.counts.bins[c] / n)
        floor_ref, floor_live = np.maximum(ref_h, 1e-4), np.maximum(live_h, 1e-4)
        floor_ref, floor_live = floor_ref / floor_ref.sum(), floor_live / floor_live.sum()
        direct_psi = float(np.sum((floor_live - floor_ref) * np.log(floor_live / floor_ref)))
        assert score.psi == pytest.approx(direct_psi, rel=1e-6, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(1, 2000), stuck=st.integers(0, 3))
def test_scores_of_all_channels_at_once_equal_the_functions_per_channel(
    seed: int, n: int, stuck: int
) -> None:
    profile = _profile(np.random.default_rng(seed + 9).normal(size=(3000, 3)))
    live = _live(seed, n, 0.7, 2.0, channels=3)
    if stuck < 3:
        live[:, stuck] = live[0, stuck]
    counter = BinCounter(profile)
    counter.add_samples(live)
    for c, (channel, score) in enumerate(
        zip(profile.channels, score_counts(profile, counter.counts).channels, strict=True)
    ):
        fractions = counter.counts.bins[c] / n
        ref, cur = coarsen(channel.histogram), coarsen(fractions)
        assert score.psi == pytest.approx(
            population_stability_index(list(ref), list(cur)), rel=1e-9, abs=1e-12
        )
        assert score.js == pytest.approx(js_distance(ref, cur), rel=1e-9, abs=1e-12)
        assert score.ks == pytest.approx(ks_statistic(channel.histogram, fractions), rel=1e-9, abs=1e-12)


def test_nan_samples_are_counted_apart_and_never_binned() -> None:
    profile = _profile(np.random.default_rng(0).normal(size=(1000, 2)), bins=10)
    counter = BinCounter(profile)
    counter.add_samples(np.array([[np.nan, 1.0], [0.5, np.inf], [np.nan, 2.0]]))
    assert counter.counts.nonfinite.tolist() == [2, 1]
    assert counter.counts.samples.tolist() == [1, 2]
    scores = score_counts(profile, counter.counts)
    assert scores.channels[0].mean == pytest.approx(0.5)
    only_nan = BinCounter(profile)
    only_nan.add_samples(np.array([[np.nan, 1.0]]))
    assert score_counts(profile, only_nan.counts).channels[0].psi is None


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(1, 3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_streaming_in_any_chunking_counts_the_same_as_one_pass(seed: int, n: int, cuts: list[int]) -> None:
    profile = _profile(np.random.default_rng(seed + 3).normal(size=(2000, 2)), bins=50)
    live = _live(seed, n, 0.5, 2.0)
    whole = BinCounter(profile)
    whole.add_samples(live)
    chunked = BinCounter(profile)
    bounds = [0, *sorted(c % (n + 1) for c in cuts), n]
    for a, b in itertools.pairwise(bounds):
        chunked.add_samples(live[a:b])
    assert np.array_equal(whole.counts.bins, chunked.counts.bins)
    assert whole.counts.sums == pytest.approx(chunked.counts.sums)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n_a=st.integers(1, 2000), n_b=st.integers(1, 2000), shift=st.floats(-2, 2))
def test_merge_then_score_equals_score_of_the_concatenation(
    seed: int, n_a: int, n_b: int, shift: float
) -> None:
    profile = _profile(np.random.default_rng(seed + 5).normal(size=(3000, 2)))
    a, b = _live(seed, n_a, 0.0, 1.0), _live(seed + 1, n_b, shift, 1.0)
    ca, cb, cab = BinCounter(profile), BinCounter(profile), BinCounter(profile)
    ca.add_samples(a)
    cb.add_samples(b)
    cab.add_samples(np.concatenate([a, b]))
    merged = ca.take() + cb.take()
    assert np.array_equal(merged.bins, cab.counts.bins)
    for m, c in zip(
        score_counts(profile, merged).channels, score_counts(profile, cab.counts).channels, strict=True
    ):
        assert (m.psi, m.js, m.ks) == pytest.approx((c.psi, c.js, c.ks), abs=1e-12)
        assert m.mean == pytest.approx(c.mean)
        assert m.std == pytest.approx(c.std, abs=1e-9)


def test_take_resets_and_merging_counts_of_other_profiles_is_refused() -> None:
    profile = _profile(np.random.default_rng(0).normal(size=(1000, 2)), bins=10)
    counter = BinCounter(profile)
    counter.add_samples(np.zeros((5, 2)))
    assert counter.take().samples.tolist() == [5, 5]
    assert counter.counts.samples.tolist() == [0, 0]
    with pytest.raises(ValueError, match="different shapes"):
        counter.counts + DriftCounts.zeros(2, 20)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        counter.add_samples(np.zeros((5, 3)))


def test_outputs_class_and_confidence_psi_against_the_reference() -> None:
    labels = ["a", "b"]
    ref_out = np.array([[0.9, 0.1], [0.2, 0.8]] * 50)
    profile = _profile(np.random.default_rng(0).normal(size=(1000, 1)), bins=10)
    profile.outputs = [output_profile("out", ref_out, labels, confidences=ref_out.max(axis=1))]
    same = BinCounter(profile, labels)
    same.add_outputs(["a", "b"] * 50, [0.9, 0.8] * 50)
    skewed = BinCounter(profile, labels)
    skewed.add_outputs(["a"] * 100, [0.55] * 100)
    s_same = score_counts(profile, same.counts, labels).outputs
    s_skew = score_counts(profile, skewed.counts, labels).outputs
    assert s_same is not None
    assert s_skew is not None
    assert s_same.class_psi == pytest.approx(0.0, abs=1e-9)
    assert s_same.confidence_psi == pytest.approx(0.0, abs=1e-9)
    assert s_skew.class_psi is not None
    assert s_skew.class_psi > 1.0
    assert s_skew.confidence_psi is not None
    assert s_skew.confidence_psi > 1.0
    assert s_skew.classes == {"a": 100, "b": 0}
    assert len(s_skew.confidence) == len(CONFIDENCE_EDGES) - 1


@settings(max_examples=60, deadline=None)
@given(
    edges=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=40),
    picks=st.lists(st.integers(0, 10_000), max_size=50),
    extra=st.lists(st.floats(-1e9, 1e9, allow_nan=False), max_size=50),
    seed=seeds,
)
def test_bin_lookup_equals_searchsorted_at_edges_ties_and_outliers(
    edges: list[float], picks: list[int], extra: list[float], seed: int
) -> None:
    inner = np.sort(np.asarray(edges, dtype=np.float64))
    bin_edges = [float(inner[0]) - 1.0, *inner.tolist(), float(inner[-1]) + 1.0]
    profile = ReferenceProfile(
        windows=1,
        samples=1,
        channels=[
            ChannelProfile(
                name="x",
                mean=0.0,
                std=1.0,
                min=bin_edges[0],
                max=bin_edges[-1],
                bin_edges=bin_edges,
                histogram=[1.0 / (len(bin_edges) - 1)] * (len(bin_edges) - 1),
            )
        ],
    )
    rng = np.random.default_rng(seed)
    on_edges = inner[[p % len(inner) for p in picks]]
    near = np.concatenate([np.nextafter(on_edges, np.inf), np.nextafter(on_edges, -np.inf)])
    spread = rng.uniform(inner[0] - 10, inner[-1] + 10, size=200)
    values = np.concatenate([on_edges, near, spread, np.asarray(extra, dtype=np.float64)])
    counter = BinCounter(profile)
    counter.add_samples(values.reshape(-1, 1))
    expected = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)
    assert np.array_equal(counter.counts.bins[0], expected)
    # the agent's windows are float32: the same placement as searchsorted on their exact values
    narrow = values.astype(np.float32)
    counter32 = BinCounter(profile)
    counter32.add_samples(narrow.reshape(-1, 1))
    wide = narrow.astype(np.float64)
    expected32 = np.bincount(np.searchsorted(inner, wide, side="right"), minlength=len(inner) + 1)
    assert np.array_equal(counter32.counts.bins[0], expected32)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, sizes=st.lists(st.integers(0, 1500), min_size=1, max_size=4), stuck=st.integers(0, 4))
def test_scores_from_reference_arrays_kept_across_reports_equal_scores_from_the_profile(
    seed: int, sizes: list[int], stuck: int
) -> None:
    # The monitor derives the profile's arrays once and scores every report with them: each
    # report must score exactly (==, not approximately) as scoring from the profile does.
    labels = ["a", "b", "c"]
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(3000, 4))
    ref[:, 1] += 0.5 * ref[:, 0]
    profile = _profile(ref)
    ref_out = rng.dirichlet([1.0, 1.0, 1.0], size=200)
    profile.outputs = [output_profile("out", ref_out, labels, confidences=ref_out.max(axis=1))]
    kept = ReferenceArrays(profile, labels)
    counter = BinCounter(profile, labels)
    for n in sizes:
        live = rng.normal(rng.uniform(-1, 1), rng.uniform(0.3, 2.0), size=(n, 4))
        if stuck < 4:
            live[:, stuck] = 0.25
        live[rng.random(n) < 0.02, 2] = np.nan
        counter.add_samples(live)
        counter.add_outputs([labels[i] for i in rng.integers(0, 3, n)], rng.uniform(0.3, 1.0, n))
        counts = counter.take()
        scores = score_counts(profile, counts, labels, reference=kept)
        assert scores == score_counts(profile, counts, labels)
        assert [(c.psi, c.js, c.ks, c.mean, c.std) for c in scores.channels] == _marginals_from_profile(
            profile, counts
        )
        outputs = scores.outputs
        assert outputs is not None
        expected = profile.outputs[0]
        assert expected.class_distribution is not None
        assert expected.confidence_histogram is not None
        if n:
            assert outputs.class_psi == population_stability_index(
                [expected.class_distribution[k] for k in labels], list(counts.classes / counts.classes.sum())
            )
            assert outputs.confidence_psi == population_stability_index(
                expected.confidence_histogram, list(counts.confidence / counts.confidence.sum())
            )


def _marginals_from_profile(profile: ReferenceProfile, counts: DriftCounts) -> list[tuple[float | None, ...]]:
    # The scoring as it was before the monitor kept the profile's arrays (every array re-derived
    # from the profile at each report): the kept arrays must give the very same floats.
    n = counts.bins.sum(axis=1)
    raw = np.array([c.histogram for c in profile.channels], dtype=np.float64)
    ref = raw / raw.sum(axis=1, keepdims=True)
    live = counts.bins / np.maximum(n, 1)[:, None]
    ref_c, live_c = coarsen(ref), coarsen(live)
    floor_ref = np.maximum(coarsen(raw), 1e-4)
    floor_live = np.maximum(live_c, 1e-4)
    floor_ref /= floor_ref.sum(axis=1, keepdims=True)
    floor_live /= floor_live.sum(axis=1, keepdims=True)
    psi = np.sum((floor_live - floor_ref) * np.log(floor_live / floor_ref), axis=1)
    p = ref_c / ref_c.sum(axis=1, keepdims=True)
    q = live_c / np.maximum(live_c.sum(axis=1, keepdims=True), 1e-300)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = [
            np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)), 0.0).sum(axis=1)
            for a in (p, q)
        ]
    js = np.sqrt(np.maximum(0.0, (kl[0] + kl[1]) / 2))
    ks = np.max(np.abs(np.cumsum(ref, axis=1) - np.cumsum(live, axis=1)), axis=1)
    mean = counts.sums / np.maximum(n, 1)
    std = np.sqrt(np.maximum(0.0, counts.sumsq / np.maximum(n, 1) - mean * mean))
    return [tuple(float(v[c]) if n[c] > 0 else None for v in (psi, js, ks, mean, std)) for c in range(len(n))]


def test_reference_arrays_of_another_profile_or_labels_are_not_used() -> None:
    a = _profile(np.random.default_rng(0).normal(size=(1000, 2)))
    b = _profile(np.random.default_rng(1).normal(3.0, 1.0, size=(1000, 2)))
    counter = BinCounter(a)
    counter.add_samples(np.random.default_rng(2).normal(size=(500, 2)))
    counts = counter.take()
    expected = score_counts(a, counts)
    assert score_counts(a, counts, reference=ReferenceArrays(b)) == expected
    assert score_counts(a, counts, reference=ReferenceArrays(a, ["x"])) == expected
