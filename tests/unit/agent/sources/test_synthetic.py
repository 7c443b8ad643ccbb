"""The synthetic generator: deterministic by seed, and each injected drift visible in the statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from edgefleet.agent.sources import SyntheticSignal, SyntheticSourceConfig

pytestmark = pytest.mark.unit

RATE = 50.0


def config(**overrides: Any) -> SyntheticSourceConfig:
    base: dict[str, Any] = {"name": "syn", "channels": 4, "rate_hz": RATE, "seed": 7, "noise_std": 0.05}
    return SyntheticSourceConfig.model_validate(base | overrides)


def halves(drift: list[dict[str, Any]], seconds: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Samples before and after t = seconds/2, with the drift starting at the midpoint."""
    signal = SyntheticSignal(config(drift=[{"start_s": seconds / 2, **d} for d in drift]))
    samples, t = signal.generate(int(seconds * RATE))
    before = samples[t < seconds / 2]
    after = samples[t >= seconds / 2]
    return before, after


def test_same_seed_same_signal_and_continuation() -> None:
    a, ta = SyntheticSignal(config()).generate(300)
    split = SyntheticSignal(config())
    b1, tb1 = split.generate(100)
    b2, tb2 = split.generate(200)
    np.testing.assert_array_equal(a, np.concatenate([b1, b2]))
    np.testing.assert_array_equal(ta, np.concatenate([tb1, tb2]))
    assert ta[1] == pytest.approx(1 / RATE)
    c, _ = SyntheticSignal(config(seed=8)).generate(300)
    assert not np.allclose(a, c)
    assert a.dtype == np.float32
    assert a.shape == (300, 4)


def test_without_drift_the_halves_look_alike() -> None:
    before, after = halves([])
    np.testing.assert_allclose(before.mean(axis=0), after.mean(axis=0), atol=0.1)
    np.testing.assert_allclose(before.std(axis=0), after.std(axis=0), rtol=0.1)


def test_gain_drift_scales_the_spread() -> None:
    before, after = halves([{"kind": "gain", "magnitude": 3.0, "channels": [1]}])
    ratio = after.std(axis=0) / before.std(axis=0)
    assert ratio[1] == pytest.approx(3.0, rel=0.15)
    np.testing.assert_allclose(np.delete(ratio, 1), 1.0, rtol=0.1)


def test_offset_drift_moves_the_mean() -> None:
    before, after = halves([{"kind": "offset", "magnitude": 5.0}])
    np.testing.assert_allclose(after.mean(axis=0) - before.mean(axis=0), 5.0, atol=0.2)


def test_noise_drift_adds_variance() -> None:
    before, after = halves([{"kind": "noise", "magnitude": 2.0, "channels": [0, 2]}])
    added = after.var(axis=0) - before.var(axis=0)
    assert added[0] == pytest.approx(4.0, rel=0.2)
    assert added[2] == pytest.approx(4.0, rel=0.2)
    assert abs(added[1]) < 0.5


def test_channel_swap_exchanges_statistics() -> None:
    before, after = halves([{"kind": "channel_swap", "channels": [0, 3]}])
    assert after.mean(axis=0)[0] == pytest.approx(before.mean(axis=0)[3], abs=0.15)
    assert after.mean(axis=0)[3] == pytest.approx(before.mean(axis=0)[0], abs=0.15)


def test_drift_from_the_start_and_ramped() -> None:
    signal = SyntheticSignal(
        config(noise_std=0.0, drift=[{"kind": "offset", "magnitude": 10.0, "ramp_s": 10}])
    )
    clean = SyntheticSignal(config(noise_std=0.0))
    drifted, t = signal.generate(int(20 * RATE))
    plain, _ = clean.generate(int(20 * RATE))
    shift = (drifted - plain)[:, 0]
    assert shift[0] == pytest.approx(0.0, abs=1e-4)
    assert shift[t == 5.0][0] == pytest.approx(5.0, abs=1e-3)
    assert shift[-1] == pytest.approx(10.0, abs=1e-3)


@pytest.mark.parametrize(
    ("drift", "message"),
    [
        ({"kind": "channel_swap"}, "channel_swap needs channels"),
        ({"kind": "channel_swap", "channels": [1, 1]}, "channel_swap needs channels"),
        ({"kind": "gain", "channels": [9]}, "out of range"),
        ({"kind": "wobble"}, "kind"),
        ({"kind": "gain", "start_s": -1}, "start_s"),
    ],
)
def test_bad_drift_specs_are_refused(drift: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(drift=[drift])
