"""Which windows the cloud should answer, and why: the fallback policies, pure and small.

Each policy is one class with a ``reason(...)`` that returns a short reason or None, and holds
no state and takes no lock, so the router (:mod:`edgefleet.agent.cloud_router`) can call them on
the inference thread and tests can call them on literals:

* :class:`ConfidencePolicy` - the edge answer is unsure: top probability under
  ``min_confidence`` (``low_confidence``), top-2 margin under ``min_margin`` (``low_margin``) or
  normalized entropy over ``max_entropy`` (``high_entropy``);
* :class:`OutOfDistributionPolicy` - the input is not what the model was trained on: an active
  drift alert on an input channel (``drift_alert``) or a window outside the bundle reference's
  per-channel range widened by ``range_tolerance`` (``out_of_range``);
* :class:`CapacityPolicy` - the edge cannot answer well now: no model active (``no_model``), the
  stream's ring buffer over ``queue_high_water`` of its capacity (``queue_high``), or the
  inference latency p95 over ``latency_p95_ms`` (``latency_slo``).

:class:`FallbackPolicy` asks them in that order of precedence (capacity, then out of
distribution, then confidence): the first reason wins; the confidence thresholds may differ per
model (``per_model``, by manifest name: each model's scores are calibrated its own way). What the
device looks like right now (drift alerts, reference ranges, buffer fill, latency, model) comes in
as :class:`Signals`, gathered once per batch by whoever owns those parts (see
:mod:`edgefleet.agent.fallback_signals`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgefleet.runtime.bundle import Prediction
from edgefleet.runtime.profile import ReferenceProfile
from edgefleet.runtime.ringbuffer import Window
from edgefleet.types import FloatArray

__all__ = [
    "CapacityPolicy",
    "ChannelRanges",
    "ConfidencePolicy",
    "FallbackPolicy",
    "OutOfDistributionPolicy",
    "SignalSource",
    "Signals",
    "probabilities",
]


def probabilities(values: FloatArray) -> npt.NDArray[np.float64]:
    """The class probabilities of one output row: as is when it already is a distribution, else
    its softmax (the same test :meth:`edgefleet.runtime.bundle.Bundle.interpret_batch` applies)."""
    row = np.asarray(values, dtype=np.float64).ravel()
    if row.size == 0 or (row.min() >= 0 and abs(row.sum() - 1.0) <= 0.05):
        return row
    shifted = np.exp(row - row.max())
    result: npt.NDArray[np.float64] = shifted / shifted.sum()
    return result


@dataclass(frozen=True)
class ConfidencePolicy:
    """Low confidence: top probability under ``min_confidence``, top-2 margin under ``min_margin``
    or entropy (divided by log K, so 0..1) over ``max_entropy``; a zero margin / an entropy of 1
    turns that test off."""

    min_confidence: float = 0.6
    min_margin: float = 0.0
    max_entropy: float = 1.0

    def reason(self, prediction: Prediction | None) -> str | None:
        if prediction is None:
            # Kept for callers of the old router API; the router asks CapacityPolicy first.
            return "no_model"
        if prediction.score is not None and prediction.score < self.min_confidence:
            return "low_confidence"
        if self.min_margin <= 0 and self.max_entropy >= 1:
            return None  # the common case needs no probabilities
        probs = probabilities(prediction.values)
        if probs.size < 2:
            return None
        if self.min_margin > 0:
            top2 = np.partition(probs, -2)[-2:]
            if float(top2[1] - top2[0]) < self.min_margin:
                return "low_margin"
        if self.max_entropy < 1:
            p = probs[probs > 0]
            entropy = float(-(p * np.log(p)).sum()) / math.log(probs.size)
            if entropy > self.max_entropy:
                return "high_entropy"
        return None


@dataclass(frozen=True, eq=False)
class ChannelRanges:
    """Per input channel, the lowest and highest value a window may hold and still count as
    in distribution: the reference's ``[min, max]`` widened by ``tolerance`` times its width."""

    low: FloatArray
    high: FloatArray

    @classmethod
    def from_profile(cls, profile: ReferenceProfile, tolerance: float) -> ChannelRanges:
        lo = np.array([c.min for c in profile.channels], dtype=np.float64)
        hi = np.array([c.max for c in profile.channels], dtype=np.float64)
        slack = (hi - lo) * tolerance
        return cls((lo - slack).astype(np.float32), (hi + slack).astype(np.float32))

    def outside(self, data: FloatArray) -> bool:
        """True when any sample of ``data`` (``(length, channels)``) leaves its channel's range."""
        if data.ndim != 2 or data.shape[1] != self.low.shape[0]:
            return False  # another model's windows: these ranges say nothing about them
        return bool((data.min(axis=0) < self.low).any() or (data.max(axis=0) > self.high).any())


@dataclass(frozen=True)
class Signals:
    """The device's state as the policies see it, gathered once per batch."""

    model_active: bool = True
    drifted_channels: frozenset[str] = frozenset()
    ranges: ChannelRanges | None = None
    fill: Mapping[str, float] = field(default_factory=dict)
    """Per stream: ring buffer fill over its capacity (0..1)."""
    latency_p95_ms: float | None = None
    model_name: str | None = None
    """The model the slot holds now (its manifest name), for per-model thresholds."""


SignalSource = Callable[[], Signals]
"""Gathers the device's :class:`Signals` now (one call per batch)."""


@dataclass(frozen=True)
class OutOfDistributionPolicy:
    """Out of distribution: ``drift_alert`` while a drift alert is active on an input channel
    (with ``on_drift``), ``out_of_range`` when a window leaves the reference's range (with
    ``on_out_of_range``; the range itself comes in ``Signals.ranges``)."""

    on_drift: bool = False
    on_out_of_range: bool = False

    def reason(self, window: Window, signals: Signals) -> str | None:
        if self.on_drift and signals.drifted_channels:
            return "drift_alert"
        if self.on_out_of_range and signals.ranges is not None and signals.ranges.outside(window.data):
            return "out_of_range"
        return None


@dataclass(frozen=True)
class CapacityPolicy:
    """Lack of capacity: ``no_model`` without an active model, ``queue_high`` when the window's
    stream buffer is at least ``queue_high_water`` full, ``latency_slo`` when the inference latency
    p95 is over ``latency_p95_ms``; None turns a test off."""

    queue_high_water: float | None = None
    latency_p95_ms: float | None = None

    def reason(self, window: Window, signals: Signals) -> str | None:
        if not signals.model_active:
            return "no_model"
        if (
            self.queue_high_water is not None
            and signals.fill.get(window.stream, 0.0) >= self.queue_high_water
        ):
            return "queue_high"
        p95 = signals.latency_p95_ms
        if self.latency_p95_ms is not None and p95 is not None and p95 > self.latency_p95_ms:
            return "latency_slo"
        return None


@dataclass(frozen=True)
class FallbackPolicy:
    """The three policies together: capacity first, then out of distribution, then confidence;
    ``per_model`` replaces ``confidence`` for the model of that name (``Signals.model_name``)."""

    confidence: ConfidencePolicy = field(default_factory=ConfidencePolicy)
    ood: OutOfDistributionPolicy = field(default_factory=OutOfDistributionPolicy)
    capacity: CapacityPolicy = field(default_factory=CapacityPolicy)
    per_model: Mapping[str, ConfidencePolicy] = field(default_factory=dict)

    @property
    def needs_ranges(self) -> bool:
        return self.ood.on_out_of_range

    def reason(self, window: Window, prediction: Prediction | None, signals: Signals) -> str | None:
        if prediction is None:
            return "no_model"
        confidence = self.confidence
        if signals.model_name is not None:
            confidence = self.per_model.get(signals.model_name, confidence)
        return (
            self.capacity.reason(window, signals)
            or self.ood.reason(window, signals)
            or confidence.reason(prediction)
        )
