"""Drift statistics on mergeable bin counts: pure functions, no I/O, no clock.

Live samples are counted into the reference profile's bins (:class:`BinCounter`, vectorised per
pushed block); a report's :class:`DriftCounts` are raw integers plus per-channel sums, so counts
from many reports, devices or chunkings merge by addition (``a + b``) and scoring the merged
counts equals scoring the concatenated data. :func:`score_counts` compares counts with the
:class:`~edgefleet.runtime.profile.ReferenceProfile`:

* per input channel: **PSI** and **Jensen-Shannon distance** (base 2, in [0, 1]) over the
  reference's deciles (the fine percentile bins summed ten at a time: fewer, fuller bins keep
  both stable on a few thousand samples), the **Kolmogorov-Smirnov statistic** over the fine
  percentile CDF, and mean/std against the reference's;
* per input channel, two statistics made for what the marginal ones miss on real sensor data
  (:mod:`edgefleet.runtime.drift_cross`): **scale**, the change of the channel's spread relative
  to the other channels' (a gain on one axis), and **swap**, how much better the channel's live
  correlations with the others match another channel's reference correlations than its own
  (two axes wired the other way round);
* for the outputs: PSI of the predicted class distribution and of the top-class confidence
  histogram against the reference's.

The binned KS statistic is never above the exact two-sample statistic on the same data and is
below it by at most the largest ``min(reference mass, live mass)`` of any one bin: with the 100
percentile bins of a schema 2 profile, at most about 0.01 (see :func:`ks_error_bound`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgefleet.runtime.drift_cross import correlation_from_moments, scale_scores, swap_scores
from edgefleet.runtime.drift_grid import GridIndex
from edgefleet.runtime.profile import (
    _PSI_FLOOR,
    CONFIDENCE_EDGES,
    ReferenceProfile,
    population_stability_index,
)

__all__ = [
    "COARSE_BINS",
    "BinCounter",
    "ChannelScore",
    "DriftCounts",
    "DriftScores",
    "OutputScore",
    "ReferenceArrays",
    "coarsen",
    "js_distance",
    "ks_error_bound",
    "ks_statistic",
    "score_counts",
]

COARSE_BINS = 10
"""Bins PSI and JS are computed over (the reference's deciles when it has 100 percentile bins)."""

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]


@dataclass
class DriftCounts:
    """Raw counts of one span of live data; merge two spans with ``+``.

    ``bins[c, i]``: finite samples of channel ``c`` in reference bin ``i``; ``sums`` and
    ``sumsq`` their sum and sum of squares per channel; ``nonfinite`` NaN/inf samples per
    channel (not in ``bins``); ``classes[k]``: windows whose predicted class was label ``k``;
    ``confidence[j]``: windows whose top-class confidence fell in confidence bin ``j``;
    ``moments``: over the rows where every channel is finite, the ``(C + 1, C + 1)`` sums of
    ``[1, x] [1, x]^T`` (row count, sums, cross products), for the correlations; None where the
    counts were rebuilt without it (a controller merging version 2 reports).
    """

    bins: IntArray
    sums: F64Array
    sumsq: F64Array
    nonfinite: IntArray
    classes: IntArray
    confidence: IntArray
    moments: F64Array | None = None

    @classmethod
    def zeros(cls, channels: int, bins: int, classes: int = 0, confidence_bins: int = 0) -> DriftCounts:
        return cls(
            bins=np.zeros((channels, bins), dtype=np.int64),
            sums=np.zeros(channels, dtype=np.float64),
            sumsq=np.zeros(channels, dtype=np.float64),
            nonfinite=np.zeros(channels, dtype=np.int64),
            classes=np.zeros(classes, dtype=np.int64),
            confidence=np.zeros(confidence_bins, dtype=np.int64),
            moments=np.zeros((channels + 1, channels + 1), dtype=np.float64),
        )

    def __add__(self, other: DriftCounts) -> DriftCounts:
        if self.bins.shape != other.bins.shape or self.classes.shape != other.classes.shape:
            raise ValueError(
                f"cannot merge counts of different shapes: bins {self.bins.shape} vs {other.bins.shape}, "
                f"classes {self.classes.shape} vs {other.classes.shape}; merge only counts of one profile"
            )
        return DriftCounts(
            bins=self.bins + other.bins,
            sums=self.sums + other.sums,
            sumsq=self.sumsq + other.sumsq,
            nonfinite=self.nonfinite + other.nonfinite,
            classes=self.classes + other.classes,
            confidence=self.confidence + other.confidence,
            moments=None if self.moments is None or other.moments is None else self.moments + other.moments,
        )

    @property
    def samples(self) -> IntArray:
        """Finite samples counted per channel."""
        counted: IntArray = self.bins.sum(axis=1)
        return counted

    @property
    def windows(self) -> int:
        """Windows whose outputs were counted."""
        return int(self.confidence.sum()) if self.confidence.size else int(self.classes.sum())


class BinCounter:
    """Counts samples into a profile's bins; constant memory whatever the length of the run.

    Not thread-safe: one thread adds (the pipeline's inference worker), and :meth:`take` is
    called from that same thread.
    """

    def __init__(self, profile: ReferenceProfile, labels: Sequence[str] = ()) -> None:
        widths = {len(c.histogram) for c in profile.channels}
        if len(widths) != 1:
            raise ValueError(f"reference channels have different bin counts {sorted(widths)}; expected one")
        self.profile = profile
        self.channels = len(profile.channels)
        self.bins = widths.pop()
        # Inner edges only: the outer bins are open-ended, so live outliers land in the end bins.
        self._inner = [np.asarray(c.bin_edges[1:-1], dtype=np.float64) for c in profile.channels]
        self._offsets = np.arange(self.channels, dtype=np.int64) * self.bins
        self.labels = list(labels)
        self._label_index = {label: i for i, label in enumerate(self.labels)}
        self._confidence_inner = np.asarray(CONFIDENCE_EDGES[1:-1], dtype=np.float64)
        self._grid = GridIndex(self._inner, self.bins)
        self.counts = self._zeros()

    def _zeros(self) -> DriftCounts:
        confidence_bins = len(CONFIDENCE_EDGES) - 1 if self.labels else 0
        return DriftCounts.zeros(self.channels, self.bins, len(self.labels), confidence_bins)

    def add_samples(self, block: npt.ArrayLike) -> None:
        """Count every row of ``block`` (``(n, channels)``) once per channel."""
        data = np.asarray(block, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.channels:
            raise ValueError(f"expected samples of shape (n, {self.channels}); got {data.shape}")
        if data.shape[0] == 0:
            return
        counts = self.counts
        finite = np.isfinite(data)
        if finite.all():
            flat = self._grid.bin_of(data).ravel()
            ones = np.ones(data.shape[0])
            sums = ones @ data  # a matrix product reduces columns faster than sum(axis=0)
            cross = data.T @ data
            counts.sums += sums
            counts.sumsq += np.diagonal(cross)
            self._add_moments(data.shape[0], sums, cross)
        else:
            counts.nonfinite += (~finite).sum(axis=0)
            parts = []
            for c, inner in enumerate(self._inner):
                column = data[finite[:, c], c]
                parts.append(np.searchsorted(inner, column, side="right") + self._offsets[c])
                counts.sums[c] += column.sum()
                counts.sumsq[c] += column @ column
            flat = np.concatenate(parts)
            rows = data[finite.all(axis=1)]
            self._add_moments(rows.shape[0], rows.sum(axis=0), rows.T @ rows)
        counts.bins += np.bincount(flat, minlength=self.channels * self.bins).reshape(
            self.channels, self.bins
        )

    def _add_moments(self, n: int, sums: F64Array, cross: F64Array) -> None:
        moments = self.counts.moments
        if moments is None or n == 0:
            return
        moments[0, 0] += n
        moments[0, 1:] += sums
        moments[1:, 0] += sums
        moments[1:, 1:] += cross

    def add_outputs(self, labels: Sequence[str | None], confidences: npt.ArrayLike) -> None:
        """Count one predicted label and top-class confidence per window (classifiers only)."""
        if not self.labels:
            return
        index = self._label_index
        known = [index[label] for label in labels if label is not None and label in index]
        if known:
            self.counts.classes += np.bincount(known, minlength=len(self.labels))
        scores = np.asarray(confidences, dtype=np.float64).ravel()
        scores = scores[np.isfinite(scores)]
        if scores.size:
            bins = np.searchsorted(self._confidence_inner, scores, side="right")
            self.counts.confidence += np.bincount(bins, minlength=len(CONFIDENCE_EDGES) - 1)

    def take(self) -> DriftCounts:
        """The counts so far; the counter starts again from zero."""
        taken, self.counts = self.counts, self._zeros()
        return taken


@functools.lru_cache(maxsize=16)
def _group_starts(fine: int, bins: int) -> IntArray:
    starts = np.round(np.linspace(0, fine, bins + 1)[:-1]).astype(np.int64)
    starts.flags.writeable = False  # shared between calls
    return starts


def coarsen(fractions: npt.ArrayLike, bins: int = COARSE_BINS) -> F64Array:
    """Sum neighbouring fine bins into ``bins`` groups (unchanged when there are no more than that)."""
    fine = np.asarray(fractions, dtype=np.float64)
    if fine.shape[-1] <= bins:
        return fine
    grouped: F64Array = np.add.reduceat(fine, _group_starts(fine.shape[-1], bins), axis=-1)
    return grouped


def js_distance(reference: npt.ArrayLike, live: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (base 2: 0 same, 1 disjoint) between two histograms over the same bins."""
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(live, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in bins: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("a histogram is empty; nothing to compare")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: F64Array) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def ks_statistic(reference: npt.ArrayLike, live: npt.ArrayLike) -> float:
    """Largest gap between the two binned CDFs (the Kolmogorov-Smirnov statistic at the bin edges)."""
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(live, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in bins: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("a histogram is empty; nothing to compare")
    return float(np.max(np.abs(np.cumsum(p / p.sum()) - np.cumsum(q / q.sum()))))


def ks_error_bound(reference: npt.ArrayLike, live: npt.ArrayLike) -> float:
    """How far below the exact two-sample KS statistic :func:`ks_statistic` can be on these bins.

    Inside a bin both CDFs rise by at most that bin's mass, so the gap between edges can exceed
    the gap at an edge by at most the smaller of the two masses.
    """
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(live, dtype=np.float64)
    return float(np.max(np.minimum(p / p.sum(), q / q.sum())))


@dataclass(frozen=True)
class ChannelScore:
    """One input channel of one report; scores are None when no finite sample was counted."""

    name: str
    samples: int
    nonfinite: int
    psi: float | None
    js: float | None
    ks: float | None
    mean: float | None
    std: float | None
    reference_mean: float
    reference_std: float
    bins: list[int] = field(default_factory=list)
    scale: float | None = None
    """Spread change relative to the other channels' (:mod:`edgefleet.runtime.drift_cross`)."""
    swap: float | None = None
    """How much better the live correlations fit channel ``swap_with``'s reference than its own."""
    swap_with: str | None = None


@dataclass(frozen=True)
class OutputScore:
    """The outputs of one report (classifiers): live vs reference class and confidence histograms."""

    windows: int
    class_psi: float | None
    confidence_psi: float | None
    classes: dict[str, int]
    confidence: list[int]


@dataclass(frozen=True)
class DriftScores:
    channels: list[ChannelScore]
    outputs: OutputScore | None


class ReferenceArrays:
    """What scoring needs of a profile, as arrays, derived once per bundle instead of per report.

    Every array is computed exactly as scoring used to compute it from the profile at each
    report, so scores are bit-for-bit those of :func:`score_counts` without it (tested).
    """

    def __init__(self, profile: ReferenceProfile, labels: Sequence[str] = ()) -> None:
        self.profile = profile
        self.labels = list(labels)
        self.names = [c.name for c in profile.channels]
        raw = np.array([c.histogram for c in profile.channels], dtype=np.float64)
        ref = raw / raw.sum(axis=1, keepdims=True)
        self.ref_cdf = np.cumsum(ref, axis=1)
        ref_c = coarsen(ref)
        floor_ref = np.maximum(coarsen(raw), _PSI_FLOOR)
        floor_ref /= floor_ref.sum(axis=1, keepdims=True)
        self.floor_ref = floor_ref
        self.log_floor_ref = np.log(floor_ref)
        self.p = ref_c / ref_c.sum(axis=1, keepdims=True)
        self.ref_means = [c.mean for c in profile.channels]
        self.ref_stds = [c.std for c in profile.channels]
        self.has_spread = np.array([c.std > 0 for c in profile.channels])
        self.correlation = (
            None if profile.correlation is None else np.asarray(profile.correlation, dtype=np.float64)
        )
        self.expected_classes: F64Array | None = None
        self.confidence_histogram: F64Array | None = None
        if self.labels and profile.outputs:
            out = profile.outputs[0]
            if out.class_distribution is not None:
                dist = out.class_distribution
                expected = [dist.get(label, 0.0) for label in self.labels]
                self.expected_classes = np.array(expected, dtype=np.float64)
            if out.confidence_histogram is not None:
                self.confidence_histogram = np.asarray(out.confidence_histogram, dtype=np.float64)


def _output_score(reference: ReferenceArrays, counts: DriftCounts) -> OutputScore | None:
    labels = reference.labels
    if not labels or not reference.profile.outputs:
        return None
    class_psi = None
    classes_total = counts.classes.sum()
    if reference.expected_classes is not None and classes_total > 0:
        class_psi = population_stability_index(reference.expected_classes, counts.classes / classes_total)
    confidence_psi = None
    confidence_total = counts.confidence.sum()
    if reference.confidence_histogram is not None and confidence_total > 0:
        confidence_psi = population_stability_index(
            reference.confidence_histogram, counts.confidence / confidence_total
        )
    return OutputScore(
        windows=counts.windows,
        class_psi=class_psi,
        confidence_psi=confidence_psi,
        classes=dict(zip(labels, counts.classes.tolist(), strict=True)),
        confidence=counts.confidence.tolist(),
    )


def _marginals(reference: ReferenceArrays, counts: DriftCounts) -> tuple[IntArray, F64Array]:
    """Per channel: samples, and rows psi, js, ks, mean, std (the formulas of :func:`js_distance`,
    :func:`ks_statistic` and ``population_stability_index``, vectorised over channels)."""
    n = counts.bins.sum(axis=1)
    live = counts.bins / np.maximum(n, 1)[:, None]
    live_c = coarsen(live)
    floor_live = np.maximum(live_c, _PSI_FLOOR)
    floor_live /= floor_live.sum(axis=1, keepdims=True)
    floor_ref = reference.floor_ref
    psi = np.sum((floor_live - floor_ref) * np.log(floor_live / floor_ref), axis=1)
    p = reference.p
    q = live_c / np.maximum(live_c.sum(axis=1, keepdims=True), 1e-300)
    m = (p + q) / 2
    # Where p (or q) > 0, m > 0 too; elsewhere the term is 0 and its NaN is never read.
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    js = np.sqrt(np.maximum(0.0, (kl_p + kl_q) / 2))
    ks = np.max(np.abs(reference.ref_cdf - np.cumsum(live, axis=1)), axis=1)
    mean = counts.sums / np.maximum(n, 1)
    std = np.sqrt(np.maximum(0.0, counts.sumsq / np.maximum(n, 1) - mean * mean))
    return n, np.stack([psi, js, ks, mean, std])


def score_counts(
    profile: ReferenceProfile,
    counts: DriftCounts,
    labels: Sequence[str] = (),
    *,
    reference: ReferenceArrays | None = None,
) -> DriftScores:
    """Score ``counts`` (from a :class:`BinCounter` of ``profile``, possibly merged) against ``profile``.

    ``reference``: ``ReferenceArrays(profile, labels)`` kept by a caller that scores many
    reports against one profile (the monitor), so the profile is not re-read each time."""
    if counts.bins.shape[0] != len(profile.channels):
        raise ValueError(f"counts have {counts.bins.shape[0]} channels; the profile {len(profile.channels)}")
    if reference is None or reference.profile is not profile or reference.labels != list(labels):
        reference = ReferenceArrays(profile, labels)
    n, rows = _marginals(reference, counts)
    seen = (n > 0).tolist()
    samples = n.tolist()
    psi, js, ks, mean, std = (
        [v if ok else None for v, ok in zip(row, seen, strict=True)] for row in rows.tolist()
    )
    scales = scale_scores(std, reference.ref_stds)
    swaps: list[tuple[float | None, int | None]] = [(None, None)] * len(samples)
    if reference.correlation is not None and counts.moments is not None:
        live, valid = correlation_from_moments(counts.moments)
        valid &= reference.has_spread
        swaps = swap_scores(live, reference.correlation, valid)
    names = reference.names
    nonfinite = counts.nonfinite.tolist()
    bins = counts.bins.tolist()
    channels = [
        ChannelScore(
            name=names[c],
            samples=samples[c],
            nonfinite=nonfinite[c],
            psi=psi[c],
            js=js[c],
            ks=ks[c],
            mean=mean[c],
            std=std[c],
            reference_mean=reference.ref_means[c],
            reference_std=reference.ref_stds[c],
            bins=bins[c],
            scale=scales[c],
            swap=swap,
            swap_with=None if other is None else names[other],
        )
        for c, (swap, other) in enumerate(swaps)
    ]
    return DriftScores(
        channels=channels,
        outputs=_output_score(reference, counts) if counts.classes.size else None,
    )
