"""Which windows the cloud should answer, and why: the fallback policies, pure and small.

Each policy (but the share target) is one class that holds no state and takes no lock, so the router
(:mod:`edgefleet.agent.cloud_router`) can call it on the inference thread and tests on literals.
Each judges a whole batch at once (``flags``: a reason or None per window, a few numpy calls per
batch, no Python loop over samples: the policies must cost little next to the model itself) and
one window (``reason``, the same rule on a batch of one):

* :class:`ConfidencePolicy` - the edge answer is unsure: top probability under
  ``min_confidence`` (``low_confidence``), top-2 margin under ``min_margin`` (``low_margin``) or
  normalized entropy over ``max_entropy`` (``high_entropy``);
* :class:`OutOfDistributionPolicy` - the input is not what the model was trained on: an active
  drift alert on an input channel (``drift_alert``) or a window outside the bundle reference's
  per-channel range widened by ``range_tolerance`` (``out_of_range``);
* :class:`~edgefleet.agent.fallback_share.ShareTarget` - the edge answer ranks among the device's
  least confident ``target_share`` of recent windows (``least_confident``); with state, it replaces
  the fixed confidence thresholds when set;
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgefleet.agent.fallback_share import REASON as SHARE_REASON
from edgefleet.agent.fallback_share import ShareTarget, uncertainty
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
    "ShareTarget",
    "SignalSource",
    "Signals",
    "probabilities",
]

Reasons = list[str | None]


def probabilities(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Class probabilities of output rows ``(N, K)`` (or one row): as they are when every row
    already is a distribution, else the rows' softmax - the test
    :meth:`edgefleet.runtime.bundle.Bundle.interpret_batch` applies to pick the top class."""
    rows = np.asarray(values, dtype=np.float64)
    rows = rows.reshape(1, -1) if rows.ndim < 2 else rows.reshape(rows.shape[0], -1)
    if rows.size == 0 or (rows.min() >= 0 and np.abs(rows.sum(axis=1) - 1.0).max() <= 0.05):
        return rows
    shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
    result: npt.NDArray[np.float64] = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def _first(*columns: Reasons) -> Reasons:
    """Per window, the first reason of the columns (in precedence order)."""
    out = columns[0]
    for column in columns[1:]:
        if any(r is None for r in out):
            out = [a if a is not None else b for a, b in zip(out, column, strict=True)]
    return out


@dataclass(frozen=True)
class ConfidencePolicy:
    """Low confidence: top probability under ``min_confidence``, top-2 margin under ``min_margin``
    or entropy (divided by log K, so 0..1) over ``max_entropy``; a zero margin / an entropy of 1
    turns that test off. Outputs with fewer than two values (regression) are never judged unsure."""

    min_confidence: float = 0.6
    min_margin: float = 0.0
    max_entropy: float = 1.0

    @property
    def needs_values(self) -> bool:
        """Whether :meth:`flags` reads the output rows (margin or entropy), not only the scores."""
        return self.min_margin > 0 or self.max_entropy < 1

    def flags(self, scores: Sequence[float | None], values: npt.ArrayLike | None) -> Reasons:
        """Per window: ``scores`` as the bundle interpreted them, ``values`` its output rows
        (``(N, K)``; may be None unless :attr:`needs_values`)."""
        floor = self.min_confidence
        out: Reasons = ["low_confidence" if s is not None and s < floor else None for s in scores]
        if not self.needs_values or values is None:
            return out  # the common case needs no probabilities
        probs = probabilities(values)
        classes = probs.shape[1] if probs.ndim == 2 else 0
        if classes < 2 or probs.shape[0] != len(out):
            return out
        if self.min_margin > 0:
            top2 = np.partition(probs, -2, axis=1)[:, -2:]
            narrow = (top2[:, 1] - top2[:, 0]) < self.min_margin
            out = _first(out, ["low_margin" if n else None for n in narrow.tolist()])
        if self.max_entropy < 1:
            logs = np.log(np.where(probs > 0, probs, 1.0))
            entropy = -(probs * logs).sum(axis=1) / math.log(classes)
            spread = entropy > self.max_entropy
            out = _first(out, ["high_entropy" if h else None for h in spread.tolist()])
        return out

    def reason(self, prediction: Prediction | None) -> str | None:
        if prediction is None:
            return "no_model"  # kept for callers of the first router API
        return self.flags([prediction.score], np.asarray(prediction.values).reshape(1, -1))[0]


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

    def outside(self, data: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Per window of ``data`` (``(N, length, channels)``, or one ``(length, channels)`` window:
        then one value), whether any of its samples leaves its channel's range. Windows of another
        channel count are never outside: these ranges say nothing about them."""
        arr = np.asarray(data)
        windows = arr[None] if arr.ndim == 2 else arr
        if windows.ndim != 3 or windows.shape[2] != self.low.shape[0]:
            return np.zeros(windows.shape[0] if windows.ndim == 3 else 1, dtype=bool)
        below = (windows.min(axis=1) < self.low).any(axis=1)
        above = (windows.max(axis=1) > self.high).any(axis=1)
        result: npt.NDArray[np.bool_] = below | above
        return result


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

    def flags(self, data: npt.ArrayLike | None, count: int, signals: Signals) -> Reasons:
        """Per window of ``data`` (``(count, length, channels)``; only read to judge ranges)."""
        if self.on_drift and signals.drifted_channels:
            return ["drift_alert"] * count
        if self.on_out_of_range and signals.ranges is not None and data is not None:
            return ["out_of_range" if o else None for o in signals.ranges.outside(data).tolist()]
        return [None] * count

    def reason(self, window: Window, signals: Signals) -> str | None:
        return self.flags(window.data[None], 1, signals)[0]


@dataclass(frozen=True)
class CapacityPolicy:
    """Lack of capacity: ``no_model`` without an active model, ``queue_high`` when the window's
    stream buffer is at least ``queue_high_water`` full, ``latency_slo`` when the inference latency
    p95 is over ``latency_p95_ms``; None turns a test off."""

    queue_high_water: float | None = None
    latency_p95_ms: float | None = None

    def stream_reason(self, stream: str, signals: Signals) -> str | None:
        if not signals.model_active:
            return "no_model"
        if self.queue_high_water is not None and signals.fill.get(stream, 0.0) >= self.queue_high_water:
            return "queue_high"
        p95 = signals.latency_p95_ms
        if self.latency_p95_ms is not None and p95 is not None and p95 > self.latency_p95_ms:
            return "latency_slo"
        return None

    def flags(self, streams: Sequence[str], signals: Signals) -> Reasons:
        """Per window, from its stream's name (judged once per stream)."""
        by_stream = {name: self.stream_reason(name, signals) for name in set(streams)}
        return [by_stream[name] for name in streams]

    def reason(self, window: Window, signals: Signals) -> str | None:
        return self.stream_reason(window.stream, signals)


def _share_flags(share: ShareTarget, predictions: Sequence[Prediction], model: str | None) -> Reasons:
    values = [np.ravel(np.asarray(p.values, dtype=np.float64)) for p in predictions]
    if len({v.size for v in values}) != 1 or values[0].size < 2:
        return [None] * len(predictions)  # regression or mixed outputs: nothing to rank
    scores = uncertainty(probabilities(np.stack(values)), share.score)
    return [SHARE_REASON if c else None for c in share.claim(scores, model).tolist()]


@dataclass(frozen=True)
class FallbackPolicy:
    """The three policies together: capacity first, then out of distribution, then confidence;
    ``per_model`` replaces ``confidence`` for the model of that name (``Signals.model_name``)."""

    confidence: ConfidencePolicy = field(default_factory=ConfidencePolicy)
    ood: OutOfDistributionPolicy = field(default_factory=OutOfDistributionPolicy)
    capacity: CapacityPolicy = field(default_factory=CapacityPolicy)
    per_model: Mapping[str, ConfidencePolicy] = field(default_factory=dict)
    share: ShareTarget | None = None
    """``fallback.target_share``: when set, it replaces the fixed confidence thresholds (those of
    ``per_model`` too) with the device's least confident share of recent windows
    (:mod:`edgefleet.agent.fallback_share`); the only part with state."""

    def flags(
        self, windows: Sequence[Window], predictions: Sequence[Prediction] | None, signals: Signals
    ) -> Reasons:
        """A reason or None per window; ``predictions`` None: no edge model answered them."""
        count = len(windows)
        if predictions is None or not signals.model_active:
            return ["no_model"] * count
        if count == 0:
            return []
        confidence = self.confidence
        if signals.model_name is not None:
            confidence = self.per_model.get(signals.model_name, confidence)
        capacity = self.capacity.flags([w.stream for w in windows], signals)
        needs_data = self.ood.on_out_of_range and signals.ranges is not None
        data = np.stack([w.data for w in windows]) if needs_data else None
        ood = self.ood.flags(data, count, signals)
        if self.share is not None:
            unsure = _share_flags(self.share, predictions, signals.model_name)
        else:
            values = np.stack([np.ravel(p.values) for p in predictions]) if confidence.needs_values else None
            unsure = confidence.flags([p.score for p in predictions], values)
        return _first(capacity, ood, unsure)

    def reason(self, window: Window, prediction: Prediction | None, signals: Signals) -> str | None:
        return self.flags([window], None if prediction is None else [prediction], signals)[0]
