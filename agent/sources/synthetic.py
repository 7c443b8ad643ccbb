"""``synthetic``: seeded sine mixtures plus noise, with optional injected drift.

Used by tests, the simulator and demos that need a stream without hardware. The same
seed gives the same samples; :class:`SyntheticSignal` is the pure generator, usable
without a thread (``SyntheticSignal(config).generate(n)``).

Drift is applied from ``start_s`` seconds of stream time (0 = from the first sample),
reaching full strength after ``ramp_s``:

* ``gain``: affected channels are multiplied by ``magnitude``;
* ``offset``: ``magnitude`` is added;
* ``noise``: extra Gaussian noise of standard deviation ``magnitude``;
* ``channel_swap``: the two channels in ``channels`` trade places (no ramp).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgefleet.agent.sources.base import BaseSourceConfig, Sink
from edgefleet.agent.sources.hub import HubSource, SourceHub
from edgefleet.types import FloatArray

__all__ = ["DriftInjection", "SyntheticSignal", "SyntheticSource", "SyntheticSourceConfig"]


class DriftInjection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["gain", "offset", "noise", "channel_swap"] = Field(description="what changes")
    magnitude: float = Field(default=2.0, description="gain factor, offset, or noise std (unused by swap)")
    start_s: float = Field(default=0.0, ge=0, description="stream seconds before the drift begins")
    ramp_s: float = Field(default=0.0, ge=0, description="seconds to grow from none to full strength")
    channels: list[int] | None = Field(
        default=None, description="affected channel indices (all when omitted; exactly two for a swap)"
    )

    @model_validator(mode="after")
    def _swap_needs_two(self) -> DriftInjection:
        if self.kind == "channel_swap" and (self.channels is None or len(set(self.channels)) != 2):
            raise ValueError("channel_swap needs channels = [a, b], two different channel indices")
        return self


class SyntheticSourceConfig(BaseSourceConfig):
    type: Literal["synthetic"] = "synthetic"
    channels: int = Field(default=3, ge=1, le=4096, description="values per sample")
    rate_hz: float = Field(default=50.0, gt=0, le=100_000, description="samples per second of stream time")
    frequencies_hz: list[float] = Field(
        default_factory=lambda: [0.5, 2.0], min_length=1, description="sine components mixed per channel"
    )
    amplitude: float = Field(default=1.0, ge=0, description="scale of the sines and channel means")
    noise_std: float = Field(default=0.05, ge=0, description="Gaussian noise added to every value")
    seed: int = Field(default=0, description="same seed, same signal")
    realtime: bool = Field(default=True, description="pace at rate_hz; false generates as fast as possible")
    duration_s: float | None = Field(default=None, gt=0, description="finish after this much stream time")
    block_size: int = Field(default=25, ge=1, le=100_000, description="samples per sink call at most")
    drift: list[DriftInjection] = Field(default_factory=list, description="[[sources.drift]] injections")

    @model_validator(mode="after")
    def _drift_channels_exist(self) -> SyntheticSourceConfig:
        for i, injection in enumerate(self.drift):
            bad = [c for c in injection.channels or [] if not 0 <= c < self.channels]
            if bad:
                raise ValueError(f"drift[{i}].channels {bad} out of range 0..{self.channels - 1}")
        return self


class SyntheticSignal:
    """Deterministic generator: consecutive :meth:`generate` calls continue the same signal."""

    def __init__(self, config: SyntheticSourceConfig) -> None:
        self.config = config
        rng = np.random.default_rng(config.seed)
        k = len(config.frequencies_hz)
        self._freqs = np.asarray(config.frequencies_hz, np.float64)
        self._phases = rng.uniform(0, 2 * np.pi, (k, config.channels))
        self._weights = rng.uniform(0.3, 1.0, (k, config.channels)) * config.amplitude
        self._means = rng.normal(0, config.amplitude, config.channels)
        self._noise = np.random.default_rng([config.seed, 1])
        self.index = 0

    def generate(self, n: int) -> tuple[FloatArray, npt.NDArray[np.float64]]:
        """The next ``n`` samples and their stream times (seconds since the first sample)."""
        cfg = self.config
        t = (self.index + np.arange(n, dtype=np.float64)) / cfg.rate_hz
        self.index += n
        angles = 2 * np.pi * t[:, None, None] * self._freqs[None, :, None] + self._phases[None]
        x = (np.sin(angles) * self._weights[None]).sum(axis=1) + self._means
        if cfg.noise_std:
            x += self._noise.normal(0, cfg.noise_std, x.shape)
        for injection in cfg.drift:
            self._apply(x, t, injection)
        return x.astype(np.float32), t

    def _apply(self, x: npt.NDArray[np.float64], t: npt.NDArray[np.float64], d: DriftInjection) -> None:
        active = t >= d.start_s
        if not active.any():
            return
        if d.kind == "channel_swap":
            a, b = d.channels or (0, 1)
            swapped = x[active][:, [b, a]]
            x[active, a] = swapped[:, 0]
            x[active, b] = swapped[:, 1]
            return
        strength = np.clip((t - d.start_s) / d.ramp_s, 0, 1) if d.ramp_s else active.astype(np.float64)
        strength = np.where(active, strength, 0.0)[:, None]
        cols = list(range(x.shape[1])) if d.channels is None else d.channels
        if d.kind == "gain":
            x[:, cols] *= 1 + (d.magnitude - 1) * strength
        elif d.kind == "offset":
            x[:, cols] += d.magnitude * strength
        else:  # noise
            x[:, cols] += self._noise.normal(0, 1, (x.shape[0], len(cols))) * d.magnitude * strength


class SyntheticSource(HubSource[SyntheticSourceConfig]):
    type_key = "synthetic"
    config_model = SyntheticSourceConfig

    BLOCKS_PER_TURN = 16  # unpaced or catching up: blocks sent before the hub serves the others

    def __init__(self, config: SyntheticSourceConfig, sink: Sink) -> None:
        super().__init__(config, sink)
        self._signal = SyntheticSignal(config)
        self._wall0 = 0.0
        self._mono0 = 0.0

    @property
    def channels(self) -> int:
        return self.config.channels

    def _open(self, hub: SourceHub, now: float) -> float | None:
        rate = self.config.rate_hz
        self._wall0 = time.time() - self._signal.index / rate  # resuming continues the timeline
        self._mono0 = now - self._signal.index / rate
        return now

    def _turn(self, now: float) -> float | None:
        cfg = self.config
        total = None if cfg.duration_s is None else max(1, round(cfg.duration_s * cfg.rate_hz))
        for _ in range(self.BLOCKS_PER_TURN):
            remaining = None if total is None else total - self._signal.index
            if remaining is not None and remaining <= 0:
                self._mark_finished()
                return None
            n = cfg.block_size
            if cfg.realtime:
                due = int((now - self._mono0) * cfg.rate_hz) + 1 - self._signal.index
                if due <= 0:
                    return self._mono0 + self._signal.index / cfg.rate_hz  # when the next is due
                n = min(n, due)
            if remaining is not None:
                n = min(n, remaining)
            samples, t = self._signal.generate(n)
            self._count_frame()
            self._emit(samples, self._wall0 + t)
        return now  # more is due (or unpaced): another turn on the hub's next pass
