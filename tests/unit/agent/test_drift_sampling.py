"""The drift monitor at high window rates: ``min_interval_s``, systematic sampling (``[drift]
sample``) and ring group calls (``add_group``). Pure logic, synthetic profiles and clocks."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.agent.config import DriftConfig
from edgefleet.agent.drift_monitor import DriftMonitor, DriftReport, DriftSettings
from edgefleet.runtime.profile import ReferenceProfile, reference_profile

L, HOP, STREAMS = 10, 2, ("a", "b", "c")


def _profile() -> ReferenceProfile:
    ref = np.random.default_rng(0).normal(size=(4000, 2))
    return reference_profile(ref.reshape(-1, 1, 2), ["c0", "c1"], bins=20)


class Feed:
    """Three streams of one ring group at ``rate`` windows per second each (data time), one
    group call per tick of ``count`` windows per stream, as the agent's batcher pops them."""

    def __init__(self, monitor: DriftMonitor, *, count: int = 1, rate: float = 100.0) -> None:
        self.monitor, self.count, self.rate = monitor, count, rate
        self.rng = np.random.default_rng(1)
        self.samples = {name: self.rng.normal(size=(200_000, 2)) for name in STREAMS}
        self.next_start = 0
        self.reports: list[DriftReport] = []
        self.windows = 0

    def tick(self, *, sample: bool = True) -> None:
        count = self.count
        starts = np.full(len(STREAMS), self.next_start, dtype=np.int64)
        firsts = self.next_start + np.arange(count) * HOP
        data = np.stack([self.samples[n][s : s + L] for n in STREAMS for s in firsts]).astype(np.float32)
        window_index = firsts // HOP
        t0 = np.tile(window_index / self.rate, len(STREAMS))
        self.next_start += count * HOP
        self.windows += len(data)
        if sample and self.monitor.sample_every > 1 and self.monitor.pass_over(len(data)):
            return
        self.reports += self.monitor.add_group(
            STREAMS, starts, count, HOP, data, start_ts=t0, end_ts=t0 + L / (HOP * self.rate)
        )


def test_min_interval_s_holds_a_report_open_past_windows_until_its_data_spans_it() -> None:
    chosen = DriftSettings(windows=30, min_interval_s=5.0, sample=False, interval_s=1e9)
    feed = Feed(DriftMonitor(_profile(), window_length=L, settings=chosen), rate=10.0)
    for _ in range(400):  # 3 streams at 10 windows/s of data time: 30 windows a second
        feed.tick()
    assert feed.reports, "no report closed"
    for report in feed.reports:
        assert report.windows > chosen.windows  # held open past `windows`...
        assert report.window_end - report.window_start >= chosen.min_interval_s  # ...for 5 s of data
        assert report.windows <= 6 * 30 + 3  # ...and closed soon after


def test_without_min_interval_s_a_report_closes_every_windows_windows() -> None:
    chosen = DriftSettings(windows=30, min_interval_s=0.0, interval_s=1e9)
    feed = Feed(DriftMonitor(_profile(), window_length=L, settings=chosen), rate=10.0)
    for _ in range(100):
        feed.tick()
    assert [r.windows for r in feed.reports] == [30] * 10
    assert feed.monitor.sample_every == 1  # no minimum interval: never sampled


def test_min_interval_s_counts_wall_time_for_windows_without_timestamps() -> None:
    now = [0.0]
    chosen = DriftSettings(windows=4, min_interval_s=10.0, interval_s=1e9, sample=False)
    monitor = DriftMonitor(_profile(), window_length=L, settings=chosen, clock=lambda: now[0])
    data = np.random.default_rng(2).normal(size=(40, L, 2))
    starts = np.arange(40) * L
    assert monitor.add_windows("s", starts[:32], data[:32]) == []  # 32 windows, 0 s: held open
    now[0] = 10.0
    closed = monitor.add_windows("s", starts[32:], data[32:])
    assert [r.windows for r in closed] == [40]


def test_sampling_counts_about_windows_windows_per_report_and_reports_the_rest_as_skipped() -> None:
    chosen = DriftSettings(windows=60, min_interval_s=10.0, interval_s=1e9)
    feed = Feed(DriftMonitor(_profile(), window_length=L, settings=chosen), rate=100.0)
    for _ in range(5000):  # 300 windows/s of data time: 3,000 per 10-s report
        feed.tick()
    monitor = feed.monitor
    assert 45 <= monitor.sample_every <= 55  # 3,000 windows per report / 60 (the rate from data time)
    reports = feed.reports
    assert len(reports) >= 3
    for report in reports[1:]:  # the first counts everything until it knows the rate
        assert chosen.windows <= report.windows <= 2 * chosen.windows
        assert report.skipped_windows > 10 * report.windows
    last = monitor.flush()
    assert last is not None
    assert sum(r.windows + r.skipped_windows for r in [*reports, last]) == feed.windows
    # the left-out rows are never counted later: a counted window counts its new rows only
    # (a stream's first window: all of its rows)
    first_rows = len(STREAMS) * (L - HOP)
    assert reports[0].counts.samples.tolist() == [reports[0].windows * HOP + first_rows] * 2
    for report in reports[1:]:
        assert report.counts.samples.tolist() == [report.windows * HOP] * 2


def test_sample_false_counts_every_window() -> None:
    chosen = DriftSettings(windows=60, min_interval_s=10.0, interval_s=1e9, sample=False)
    feed = Feed(DriftMonitor(_profile(), window_length=L, settings=chosen), rate=100.0)
    for _ in range(3000):
        feed.tick()
    assert feed.monitor.sample_every == 1
    assert feed.reports
    assert all(r.skipped_windows == 0 for r in feed.reports)


@settings(max_examples=25, deadline=None)
@given(
    counts=st.lists(st.integers(1, 4), min_size=1, max_size=30),
    gap_at=st.integers(0, 40),
    windows=st.integers(8, 40),
    min_interval_s=st.sampled_from([0.0, 30.0, 100.0]),
)
def test_a_group_call_counts_what_the_same_windows_named_one_by_one_count(
    counts: list[int], gap_at: int, windows: int, min_interval_s: float
) -> None:
    # Group calls are held and counted a few at a time: the reports must be the same, closed at
    # the same windows (min_interval_s in the windows' data time: 1 per sample here).
    chosen = DriftSettings(windows=windows, min_interval_s=min_interval_s, min_samples=1)
    group = DriftMonitor(_profile(), window_length=L, settings=chosen, clock=lambda: 0.0)
    named = DriftMonitor(_profile(), window_length=L, settings=chosen, clock=lambda: 0.0)
    direct = DriftMonitor(_profile(), window_length=L, settings=chosen, clock=lambda: 0.0)  # nothing held
    rng = np.random.default_rng(3)
    samples = {n: rng.normal(size=(2000, 2)).astype(np.float32) for n in STREAMS}
    start, got, want, plain = 0, [], [], []
    for call, count in enumerate(counts):
        if call == gap_at:
            start += 7 * HOP  # windows lost (a gap): the next ones do not follow on
        firsts = start + np.arange(count) * HOP
        data = np.stack([samples[n][s : s + L] for n in STREAMS for s in firsts])
        t0 = np.tile(firsts.astype(np.float64), len(STREAMS))
        starts = np.full(len(STREAMS), start, dtype=np.int64)
        got += group.add_group(STREAMS, starts, count, HOP, data, start_ts=t0, end_ts=t0 + L)
        names = [n for n in STREAMS for _ in range(count)]
        want += named.add_windows(names, np.tile(firsts, len(STREAMS)), data, start_ts=t0, end_ts=t0 + L)
        with patch("edgefleet.agent.drift_monitor.HOLD_BELOW", 0):
            plain += direct.add_windows(
                names, np.tile(firsts, len(STREAMS)), data, start_ts=t0, end_ts=t0 + L
            )
        start += count * HOP
    for monitor, reports in ((group, got), (named, want), (direct, plain)):
        last = monitor.flush()
        if last is not None:
            reports.append(last)
    assert [r.windows for r in got] == [r.windows for r in want] == [r.windows for r in plain]
    for a, b in [*zip(got, want, strict=True), *zip(got, plain, strict=True)]:
        assert np.array_equal(a.counts.bins, b.counts.bins)
        assert (a.start_sample, a.end_sample) == (b.start_sample, b.end_sample)
        assert (a.window_start, a.window_end) == (b.window_start, b.window_end)


def test_min_interval_s_over_interval_s_means_a_report_every_interval_s() -> None:
    # interval_s is the longest a report stays open, whatever min_interval_s says
    now = [0.0]
    chosen = DriftSettings(windows=4, min_interval_s=600.0, interval_s=50.0, sample=False)
    monitor = DriftMonitor(_profile(), window_length=L, settings=chosen, clock=lambda: now[0])
    data = np.random.default_rng(4).normal(size=(80, L, 2))
    assert monitor.add_windows("s", np.arange(40) * L, data[:40]) == []
    now[0] = 50.0
    assert [r.windows for r in monitor.add_windows("s", np.arange(40, 80) * L, data[40:])] == [80]
    assert DriftSettings.from_config(DriftConfig(min_interval_s=0, sample=False)) == DriftSettings(
        min_interval_s=0.0, sample=False
    )
