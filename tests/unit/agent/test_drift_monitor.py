"""The drift monitor's counting, report cadence and hysteresis (pure logic, synthetic profiles)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.agent.config import DriftConfig
from edgefleet.agent.drift_monitor import ChannelState, DriftMonitor, DriftReport, DriftSettings
from edgefleet.cloud_sync.protocol import DriftBody
from edgefleet.runtime.drift_cross import unpack_moments
from edgefleet.runtime.drift_stats import BinCounter
from edgefleet.runtime.profile import ReferenceProfile, output_profile, reference_profile

L = 10


def _profile(channels: int = 2, bins: int = 20) -> ReferenceProfile:
    ref = np.random.default_rng(0).normal(size=(4000, channels))
    return reference_profile(ref.reshape(-1, 1, channels), [f"c{i}" for i in range(channels)], bins=bins)


def _clocked_monitor() -> tuple[DriftMonitor, list[float]]:
    """A monitor closing reports every 30 s of the returned clock (``now[0]``), or 1000 windows."""
    now = [0.0]
    settings = DriftSettings(windows=1000, interval_s=30.0)
    return DriftMonitor(_profile(), window_length=L, settings=settings, clock=lambda: now[0]), now


def _windows(samples: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, len(samples) - L + 1, hop)
    return starts, np.stack([samples[s : s + L] for s in starts])


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(L, 600),
    hop=st.integers(1, 2 * L),
    batch=st.integers(1, 40),
)
def test_every_sample_is_counted_once_per_channel_however_windows_overlap_and_batch(
    seed: int, n: int, hop: int, batch: int
) -> None:
    profile = _profile()
    samples = np.random.default_rng(seed).normal(size=(n, 2))
    starts, windows = _windows(samples, hop)
    monitor = DriftMonitor(profile, window_length=L, settings=DriftSettings(windows=10**6))
    for at in range(0, len(starts), batch):
        monitor.add_windows("s", starts[at : at + batch], windows[at : at + batch])
    report = monitor.flush()
    assert report is not None
    # Exactly the samples some window covers: each once (with hop > L the gaps are never seen).
    covered = np.zeros(n, dtype=bool)
    for s in starts:
        covered[s : s + L] = True
    direct = BinCounter(profile)
    direct.add_samples(samples[covered])
    assert np.array_equal(report.counts.bins, direct.counts.bins)
    assert report.start_sample == 0
    assert report.end_sample == starts[-1] + L


def test_streams_are_counted_apart_and_a_restarted_stream_counts_again() -> None:
    profile = _profile()
    samples = np.random.default_rng(1).normal(size=(100, 2))
    starts, windows = _windows(samples, 5)
    monitor = DriftMonitor(profile, window_length=L, settings=DriftSettings(windows=10**6))
    monitor.add_windows("a", starts, windows)
    monitor.add_windows("b", starts, windows)
    monitor.add_windows("a", starts, windows)  # indices start again: a new source for stream a
    report = monitor.flush()
    assert report is not None
    assert report.counts.samples.tolist() == [300, 300]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), hop=st.integers(1, 2 * L), batch=st.integers(1, 40), cut=st.integers(0, 5))
def test_one_call_for_a_batch_of_several_streams_counts_as_one_call_per_stream(
    seed: int, hop: int, batch: int, cut: int
) -> None:
    rng = np.random.default_rng(seed)
    streams = {name: _windows(rng.normal(size=(200, 2)), hop) for name in ("a", "b", "c")}
    per_stream = DriftMonitor(_profile(), window_length=L, settings=DriftSettings(windows=10**6))
    mixed = DriftMonitor(_profile(), window_length=L, settings=DriftSettings(windows=10**6))
    for name, (starts, windows) in streams.items():
        per_stream.add_windows(name, starts, windows)
        if name == "c":  # stream c restarts: its indices begin again mid-way
            per_stream.add_windows(name, starts[cut:], windows[cut:])
    # The same windows interleaved the way a batcher pops streams, a few windows at a time each.
    names, starts_all, data_all = [], [], []
    queues = {n: list(zip(*streams[n], strict=True)) for n in streams}
    queues["c"] += list(zip(*(a[cut:] for a in streams["c"]), strict=True))
    while any(queues.values()):
        for name, queue in queues.items():
            for start, window in queue[:batch]:
                names.append(name)
                starts_all.append(start)
                data_all.append(window)
            del queue[:batch]
    for at in range(0, len(names), 3 * batch):
        part = slice(at, at + 3 * batch)
        mixed.add_windows(names[part], np.array(starts_all[part]), np.stack(data_all[part]))
    a, b = per_stream.flush(), mixed.flush()
    assert a is not None
    assert b is not None
    assert np.array_equal(a.counts.bins, b.counts.bins)
    assert a.counts.sums == pytest.approx(b.counts.sums)


def _summary(report: DriftReport) -> tuple[Any, ...]:
    c = report.counts
    return (
        report.index,
        report.windows,
        report.start_sample,
        report.end_sample,
        report.window_start,
        report.window_end,
        c.bins.tolist(),
        c.nonfinite.tolist(),
        c.classes.tolist(),
        c.confidence.tolist(),
        c.sums.tolist(),
        c.sumsq.tolist(),
        None if c.moments is None else c.moments.tolist(),
        [(a.kind, a.channel, a.metric) for a in report.alerts],
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    hop=st.integers(1, 2 * L),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=60),
    windows=st.integers(8, 120),
    restart=st.integers(0, 30),
)
def test_small_calls_held_and_counted_together_report_what_one_call_per_report_does(
    seed: int, hop: int, sizes: list[int], windows: int, restart: int
) -> None:
    # Calls under HOLD_BELOW windows are held and counted later; every report (its windows, span,
    # times, counts, outputs, alerts) must be what counting at once gives: the reference gets each
    # report's windows in one call with holding off.
    labels = ["x", "y"]
    rng = np.random.default_rng(seed)
    profile = _profile()
    profile.outputs = [output_profile("out", np.array([[0.7, 0.3], [0.2, 0.8]] * 20), labels)]
    names, starts_all, data_all = [], [], []
    for name in ("a", "b", "c"):
        # Multiples of 1/8: sums and products exact, so counting order cannot change a bit.
        starts, w = _windows(np.round(rng.normal(size=(300, 2)) * 8) / 8, hop)
        if name == "c":  # stream c restarts: its indices begin again
            starts, w = np.concatenate([starts, starts[:restart]]), np.concatenate([w, w[:restart]])
        names += [name] * len(starts)
        starts_all.append(starts)
        data_all.append(w)
    names_arr = np.array(names)
    # Interleave streams but keep each stream's windows oldest first.
    keys = rng.random(len(names))
    per_stream_rank = np.zeros(len(names))
    for n in ("a", "b", "c"):
        idx = np.flatnonzero(names_arr == n)
        per_stream_rank[idx] = np.sort(keys[idx])
    order = np.argsort(per_stream_rank, kind="stable")
    stream_of = [names[i] for i in order]
    starts_cat = np.concatenate(starts_all)[order]
    data_cat = np.concatenate(data_all)[order]
    t0 = np.arange(len(order), dtype=np.float64)
    scores = [None if i % 7 == 0 else float(v) for i, v in enumerate(rng.uniform(0.5, 1.0, len(order)))]
    out_labels = [labels[i % 2] for i in range(len(order))]
    chosen = DriftSettings(windows=windows, min_interval_s=0, min_samples=1, alert_after=1, clear_after=1)
    held = DriftMonitor(profile, window_length=L, labels=labels, settings=chosen, clock=lambda: 0.0)
    direct = DriftMonitor(profile, window_length=L, labels=labels, settings=chosen, clock=lambda: 0.0)
    got: list[DriftReport] = []
    at = 0
    for size in [*sizes, len(order)]:
        part = slice(at, min(at + size, len(order)))
        if part.start >= part.stop:
            break
        got += held.add_windows(
            stream_of[part],
            starts_cat[part],
            data_cat[part],
            start_ts=t0[part],
            end_ts=t0[part] + 1,
            labels=out_labels[part],
            scores=scores[part],
        )
        at = part.stop
        assert held.reports == at // windows  # a report closes in the call that completes it
    last = held.flush()
    if last is not None:
        got.append(last)
    # The reference: every report's windows in one call, never held.
    want: list[DriftReport] = []
    for at in range(0, len(order), windows):
        part = slice(at, at + windows)
        with patch("edgefleet.agent.drift_monitor.HOLD_BELOW", 0):
            want += direct.add_windows(
                stream_of[part],
                starts_cat[part],
                data_cat[part],
                start_ts=t0[part],
                end_ts=t0[part] + 1,
                labels=out_labels[part],
                scores=scores[part],
            )
    last = direct.flush()
    if last is not None:
        want.append(last)
    assert [_summary(r) for r in got] == [_summary(r) for r in want]


def test_held_windows_close_a_report_at_its_interval_and_are_flushed() -> None:
    monitor, now = _clocked_monitor()
    starts, windows = _windows(np.random.default_rng(4).normal(size=(300, 2)), L)
    assert monitor.add_windows("s", starts[:2], windows[:2]) == []  # held: nothing due
    now[0] = 31.0
    closed = monitor.add_windows("s", starts[2:3], windows[2:3])  # the interval has passed
    assert [r.windows for r in closed] == [3]
    assert closed[0].end_sample == 3 * L
    assert monitor.add_windows("s", starts[3:5], windows[3:5]) == []
    now[0] = 70.0
    polled = monitor.poll()
    assert polled is not None
    assert polled.windows == 2
    assert monitor.add_windows("s", starts[5:6], windows[5:6]) == []
    flushed = monitor.flush()
    assert flushed is not None
    assert (flushed.windows, flushed.start_sample, flushed.end_sample) == (1, 5 * L, 6 * L)


def test_the_scale_and_swap_keys_decide_their_metrics() -> None:
    mixing = np.array([[1.0, 0, 0, 0], [0.8, 0.6, 0, 0], [-0.3, 0.5, 0.8, 0], [0, -0.7, 0.2, 0.7]])
    ref = np.random.default_rng(0).normal(size=(8000, 4)) @ mixing.T
    profile = reference_profile(ref.reshape(-1, 1, 4), ["a", "b", "c", "d"], bins=20)
    live = np.random.default_rng(1).normal(size=(3000, 4)) @ mixing.T
    gained, swapped = live * [1.0, 1.0, 1.0, 1.6], live[:, [1, 0, 2, 3]]

    def over(samples: np.ndarray, **keys: Any) -> dict[str, list[str]]:
        chosen = replace(
            DriftSettings(windows=10**6, psi_threshold=50, js_threshold=1, ks_threshold=1), **keys
        )
        monitor = DriftMonitor(profile, window_length=L, settings=chosen)
        starts, windows = _windows(samples, L)
        monitor.add_windows("s", starts, windows)
        report = monitor.flush()
        assert report is not None
        return report.over

    assert over(gained)["d"] == ["scale"]
    assert over(gained, scale_threshold=5.0)["d"] == []
    assert over(swapped)["a"] == over(swapped)["b"] == ["swap"]
    assert over(swapped, swap_threshold=5.0)["a"] == []
    assert all(v == [] for v in over(live).values())


def test_a_report_closes_after_windows_and_splits_a_batch_at_the_boundary() -> None:
    samples = np.random.default_rng(2).normal(size=(400, 2))
    starts, windows = _windows(samples, L)
    monitor = DriftMonitor(
        _profile(), window_length=L, settings=DriftSettings(windows=16, min_interval_s=0, min_samples=1)
    )
    closed = monitor.add_windows("s", starts[:39], windows[:39])
    assert [r.windows for r in closed] == [16, 16]
    assert [(r.start_sample, r.end_sample) for r in closed] == [(0, 160), (160, 320)]
    last = monitor.flush()
    assert last is not None
    assert last.windows == 7
    assert monitor.flush() is None  # nothing left


def test_a_report_closes_after_interval_s_whichever_comes_first() -> None:
    monitor, now = _clocked_monitor()
    starts, windows = _windows(np.random.default_rng(3).normal(size=(200, 2)), L)
    assert monitor.add_windows("s", starts[:3], windows[:3]) == []
    assert monitor.poll() is None
    now[0] = 31.0
    report = monitor.poll()
    assert report is not None
    assert report.windows == 3


def _report(monitor: DriftMonitor, shift: float, n: int = 400) -> DriftReport:
    samples = np.random.default_rng(int(shift * 100) + monitor.reports).normal(size=(n, 2))
    samples[:, 0] += shift
    starts, windows = _windows(samples, L)
    monitor.add_windows(f"r{monitor.reports}", starts, windows)  # a fresh stream: counted whole
    report = monitor.flush()
    assert report is not None
    return report


def test_hysteresis_alert_after_and_clear_after_one_noisy_report_never_flaps() -> None:
    monitor = DriftMonitor(
        _profile(),
        window_length=L,
        settings=DriftSettings(windows=10**6, alert_after=2, clear_after=3, min_samples=1),
    )
    assert _report(monitor, 0.0).alerts == []
    noisy = _report(monitor, 3.0)
    assert noisy.over["c0"]
    assert not noisy.drifted["c0"]
    assert noisy.alerts == []
    assert _report(monitor, 0.0).alerts == []  # the streak broke
    _report(monitor, 3.0)
    flagged = _report(monitor, 3.0)
    assert [(a.kind, a.channel, a.report) for a in flagged.alerts] == [("alert", "c0", 4)]
    assert flagged.alerts[0].metric in ("psi", "js", "ks")
    assert flagged.alerts[0].score > 0.1
    assert flagged.drifted == {"c0": True, "c1": False}
    assert _report(monitor, 0.0).alerts == []
    assert _report(monitor, 0.0).alerts == []
    assert _report(monitor, 3.0).alerts == []  # over again: the clear streak restarts
    for _ in range(2):
        assert _report(monitor, 0.0).alerts == []
    cleared = _report(monitor, 0.0)
    assert [(a.kind, a.channel) for a in cleared.alerts] == [("cleared", "c0")]
    assert monitor.state()["channels"]["c0"]["drifted"] is False


@pytest.mark.parametrize(
    ("key", "value", "shift", "expect_over"),
    [
        ("psi_threshold", 50.0, 3.0, {"js", "ks"}),
        ("js_threshold", 1.0, 3.0, {"psi", "ks"}),
        ("ks_threshold", 1.0, 3.0, {"psi", "js"}),
    ],
)
def test_each_threshold_key_decides_its_metric(
    key: str, value: float, shift: float, expect_over: set[str]
) -> None:
    overrides: dict[str, Any] = {key: value}
    chosen = replace(DriftSettings(windows=10**6, min_samples=1), **overrides)
    monitor = DriftMonitor(_profile(), window_length=L, settings=chosen)
    assert set(_report(monitor, shift).over["c0"]) == expect_over


def test_min_samples_keeps_small_reports_from_moving_the_state() -> None:
    monitor = DriftMonitor(
        _profile(), window_length=L, settings=DriftSettings(windows=10**6, alert_after=1, min_samples=1000)
    )
    small = _report(monitor, 3.0, n=400)
    assert small.over["c0"]
    assert small.alerts == []
    assert not small.drifted["c0"]
    big = _report(monitor, 3.0, n=1200)
    assert [a.channel for a in big.alerts] == ["c0"]


def test_channel_state_names_the_metric_furthest_over_its_threshold() -> None:
    state = ChannelState()
    s = DriftSettings(alert_after=1)
    alert = state.update(0, "x", {"psi": 0.3, "ks": 0.9}, {"psi": 3.0, "ks": 6.0}, s)
    assert alert is not None
    assert (alert.metric, alert.score) == ("ks", 0.9)


def test_settings_mirror_every_drift_config_key() -> None:
    config = DriftConfig(
        interval_s=5, windows=9, psi_threshold=0.3, js_threshold=0.4, ks_threshold=0.5,
        scale_threshold=0.6, swap_threshold=0.7, alert_after=4, clear_after=6, min_samples=7,
    )  # fmt: skip
    s = DriftSettings.from_config(config)
    keys = set(DriftConfig.model_fields) - {"enabled", "max_cpu"}  # the agent's: drift_observer
    assert {k: getattr(s, k) for k in keys} == {k: getattr(config, k) for k in keys}


def test_report_body_is_a_valid_drift_body_version_3_and_version_1_still_validates() -> None:
    profile = _profile()
    labels = ["a", "b"]
    profile.outputs = [
        output_profile("out", np.array([[0.9, 0.1], [0.3, 0.7]]), labels, confidences=[0.9, 0.7])
    ]
    monitor = DriftMonitor(profile, window_length=L, labels=labels, settings=DriftSettings(windows=10**6))
    samples = np.random.default_rng(5).normal(size=(100, 2))
    starts, windows = _windows(samples, L)
    monitor.add_windows("s", starts, windows, labels=["a"] * len(starts), scores=[0.95] * len(starts))
    report = monitor.flush()
    assert report is not None
    body = DriftBody.model_validate(report.body(model_name="m", model_version="1.0.0", stream=None))
    assert body.drift_version == 3
    assert body.windows == len(starts)
    assert body.moments is not None
    assert unpack_moments(body.moments, 2) == pytest.approx(report.counts.moments)
    assert body.moments[0] == 100  # every row finite: the row count
    assert body.channels[0].bins is not None
    assert sum(body.channels[0].bins) == 100
    assert body.outputs is not None
    assert body.outputs.classes == {"a": len(starts), "b": 0}
    assert body.outputs.class_psi is not None
    assert body.outputs.class_psi > 0.1
    old = DriftBody.model_validate(
        {
            "window_start": 1.0,
            "window_end": 2.0,
            "samples": 10,
            "channels": [{"channel": "x", "mean": 0.0, "std": 1.0, "psi": 0.01}],
            "psi": 0.01,
        }
    )
    assert old.drift_version == 1
    assert old.outputs is None
