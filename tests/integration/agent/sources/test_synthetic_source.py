"""The synthetic source as a running thread: finite runs finish, live runs pace and stop, drift shows."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgefleet.agent.sources import SyntheticSignal, SyntheticSource, SyntheticSourceConfig
from tests.integration.agent.sources.helpers import Collector
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_fast_finite_run_matches_the_generator_and_finishes() -> None:
    config = SyntheticSourceConfig(name="syn", channels=2, rate_hz=100, duration_s=3, realtime=False, seed=3)
    sink = Collector()
    source = SyntheticSource(config, sink)
    before = time.time()
    with source:
        assert source.wait_finished(30)
    samples, times = sink.arrays(2)
    expected, offsets = SyntheticSignal(config).generate(300)
    np.testing.assert_array_equal(samples, expected)
    assert times[0] >= before
    np.testing.assert_allclose(times - times[0], offsets, atol=1e-6)
    assert source.stats.samples == 300
    assert sink.blocks == 300 // config.block_size


def test_realtime_run_streams_until_stopped() -> None:
    sink = Collector()
    source = SyntheticSource(SyntheticSourceConfig(name="syn", channels=3, rate_hz=200), sink)
    source.start()
    wait_until(lambda: sink.count >= 50, what="50 samples")
    source.stop()
    count = sink.count
    assert not source.running
    assert not source.finished
    _, times = sink.arrays(3)
    assert np.all(np.diff(times) > 0)
    assert sink.count == count  # nothing after stop


def test_injected_drift_is_visible_in_the_emitted_stream() -> None:
    config = SyntheticSourceConfig.model_validate(
        {
            "name": "syn",
            "channels": 3,
            "rate_hz": 50,
            "duration_s": 40,
            "realtime": False,
            "drift": [{"kind": "offset", "magnitude": 4.0, "start_s": 20, "channels": [2]}],
        }
    )
    sink = Collector()
    with SyntheticSource(config, sink) as source:
        assert source.wait_finished(30)
    samples, times = sink.arrays(3)
    half = times < times[0] + 20
    shift = samples[~half].mean(axis=0) - samples[half].mean(axis=0)
    assert shift[2] == pytest.approx(4.0, abs=0.3)
    assert np.abs(shift[:2]).max() < 0.3
