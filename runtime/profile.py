"""Reference profile of a model's training data, the baseline for drift statistics.

A bundle stores, for every input channel, moments, range and a quantile histogram of the raw
(un-normalized) training samples, and for the outputs the class distribution (classification)
or per-value mean and std. Live data is compared against it with the same bin edges:
:func:`histogram` puts live values into the reference bins (outer bins open-ended) and
:func:`population_stability_index` scores the difference (:mod:`edgefleet.runtime.drift_stats`
has the full set of drift statistics on mergeable bin counts).

Profiles written by this version (manifest ``schema_version`` 2) have ``DEFAULT_BINS`` = 100
percentile bins per channel, fine enough for a binned Kolmogorov-Smirnov statistic, and, for
classifiers, the top-class confidence histogram; profiles of schema 1 (10 bins, no confidence
histogram) still load and are scored with what they have. Schema 3 adds the channels'
``correlation`` matrix, which the drift monitor's cross-channel ``swap`` statistic needs; profiles
without it are scored without that statistic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgefleet.types import FloatArray

__all__ = [
    "CONFIDENCE_EDGES",
    "DEFAULT_BINS",
    "ChannelProfile",
    "OutputProfile",
    "ReferenceProfile",
    "correlation_matrix",
    "histogram",
    "output_profile",
    "population_stability_index",
    "reference_profile",
]

DEFAULT_BINS = 100
CONFIDENCE_EDGES: tuple[float, ...] = tuple(float(e) for e in np.linspace(0.0, 1.0, 11))
"""Bin edges of the top-class confidence histogram (ten bins of 0.1 over [0, 1])."""
_PSI_FLOOR = 1e-4  # keeps empty bins from making PSI infinite


class ChannelProfile(BaseModel):
    """Statistics of one input channel over every reference sample.

    ``bin_edges`` are the 0, 1/bins, ..., 1 quantiles (``bins + 1`` values, non-decreasing);
    ``histogram`` the fraction of reference samples in each bin (sums to 1).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    mean: float
    std: float = Field(ge=0)
    min: float
    max: float
    bin_edges: list[float]
    histogram: list[float]

    @model_validator(mode="after")
    def _check_bins(self) -> ChannelProfile:
        if len(self.bin_edges) != len(self.histogram) + 1:
            raise ValueError(
                f"channel {self.name!r}: {len(self.bin_edges)} bin edges for {len(self.histogram)} bins; "
                "expected bins + 1 edges"
            )
        if any(b < a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
            raise ValueError(f"channel {self.name!r}: bin_edges must be non-decreasing")
        total = sum(self.histogram)
        if self.histogram and abs(total - 1.0) > 1e-3:
            raise ValueError(f"channel {self.name!r}: histogram sums to {total:.4f}; expected 1")
        return self


class OutputProfile(BaseModel):
    """What the model answered on the reference windows.

    ``mean``/``std`` are per value of the (first) output; ``class_distribution`` maps each label to
    the fraction of reference windows whose argmax it was (classification only);
    ``confidence_histogram`` the fraction of reference windows whose top-class confidence fell
    in each bin of ``confidence_edges`` (classification only; manifest schema 2).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    mean: list[float]
    std: list[float]
    class_distribution: dict[str, float] | None = None
    confidence_edges: list[float] | None = None
    confidence_histogram: list[float] | None = None

    @model_validator(mode="after")
    def _check_lengths(self) -> OutputProfile:
        if len(self.mean) != len(self.std):
            raise ValueError(f"output {self.name!r}: {len(self.mean)} means but {len(self.std)} stds")
        if (self.confidence_edges is None) != (self.confidence_histogram is None):
            raise ValueError(f"output {self.name!r}: confidence_edges and confidence_histogram go together")
        if (
            self.confidence_edges is not None
            and self.confidence_histogram is not None
            and len(self.confidence_edges) != len(self.confidence_histogram) + 1
        ):
            raise ValueError(
                f"output {self.name!r}: {len(self.confidence_edges)} confidence edges for "
                f"{len(self.confidence_histogram)} bins; expected bins + 1 edges"
            )
        return self


class ReferenceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = ""
    """Where the reference data came from, e.g. ``BasicMotions TRAIN, 240 windows``."""
    windows: int = Field(ge=0)
    samples: int = Field(ge=0)
    channels: list[ChannelProfile]
    outputs: list[OutputProfile] = Field(default_factory=list)
    correlation: list[list[float]] | None = None
    """Pearson correlation between every two channels over the reference samples (manifest schema
    3), in channel order; 0 beside a constant channel. None in older profiles."""

    @model_validator(mode="after")
    def _check_correlation(self) -> ReferenceProfile:
        if self.correlation is None:
            return self
        n = len(self.channels)
        if len(self.correlation) != n or any(len(row) != n for row in self.correlation):
            raise ValueError(f"correlation must be a {n} x {n} matrix (one row and column per channel)")
        if any(not -1.0 - 1e-6 <= v <= 1.0 + 1e-6 for row in self.correlation for v in row):
            raise ValueError("correlation values must lie in [-1, 1]")
        return self


def histogram(values: npt.ArrayLike, edges: npt.ArrayLike) -> FloatArray:
    """Fraction of ``values`` in each reference bin; values outside the edges fall in the end bins.

    Bins are ``[e0, e1), [e1, e2), ..., [e_{n-1}, e_n]``; NaN values are ignored. Returns zeros when
    nothing finite is left.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    edge_arr = np.asarray(edges, dtype=np.float64)
    bins = len(edge_arr) - 1
    if bins < 1:
        raise ValueError(f"need at least 2 bin edges, got {len(edge_arr)}")
    if v.size == 0:
        return np.zeros(bins, dtype=np.float32)
    # searchsorted on the inner edges assigns a bin index directly and keeps duplicated
    # quantile edges (heavy ties) from producing zero-width bins that swallow nothing.
    idx = np.searchsorted(edge_arr[1:-1], v, side="right")
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    result: FloatArray = (counts / counts.sum()).astype(np.float32)
    return result


def population_stability_index(reference: npt.ArrayLike, live: npt.ArrayLike) -> float:
    """PSI between two normalized histograms over the same bins (0: same; > 0.25: large shift)."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), _PSI_FLOOR)
    cur = np.maximum(np.asarray(live, dtype=np.float64), _PSI_FLOOR)
    if ref.shape != cur.shape:
        raise ValueError(f"histograms differ in bins: {ref.shape[0]} vs {cur.shape[0]}")
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def correlation_matrix(samples: npt.ArrayLike) -> FloatArray:
    """Pearson correlation of ``(n, channels)`` samples over the rows where every channel is
    finite; 0 beside a channel that is constant there (its correlation is undefined)."""
    arr = np.asarray(samples, dtype=np.float64)
    rows = arr[np.isfinite(arr).all(axis=1)]
    centred = rows - rows.mean(axis=0)
    cov = centred.T @ centred
    scale = np.sqrt(np.diag(cov))
    live = scale > 0
    corr = np.zeros_like(cov)
    corr[np.ix_(live, live)] = cov[np.ix_(live, live)] / np.outer(scale[live], scale[live])
    np.fill_diagonal(corr, 1.0)
    clipped: FloatArray = np.clip(corr, -1.0, 1.0)
    return clipped


def _channel_profile(name: str, values: npt.NDArray[np.float64], bins: int) -> ChannelProfile:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(f"channel {name!r} has no finite reference values")
    edges = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1))
    edges = np.maximum.accumulate(edges)  # guard against float round-off making edges decrease
    return ChannelProfile(
        name=name,
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        bin_edges=[float(e) for e in edges],
        histogram=[float(h) for h in histogram(finite, edges)],
    )


def output_profile(
    name: str,
    values: npt.ArrayLike,
    labels: Sequence[str] | None = None,
    *,
    confidences: npt.ArrayLike | None = None,
) -> OutputProfile:
    """Profile of one model output over the reference windows; ``values`` is (N, ...) float.

    ``confidences`` (one top-class score per window, as the bundle interprets the output) adds
    the confidence histogram over :data:`CONFIDENCE_EDGES`.
    """
    arr = np.asarray(values, dtype=np.float64)
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    distribution: dict[str, float] | None = None
    if labels:
        if flat.shape[1] != len(labels):
            raise ValueError(
                f"output {name!r} has {flat.shape[1]} values per window but {len(labels)} labels"
            )
        winners = np.bincount(flat.argmax(axis=1), minlength=len(labels)) / max(len(flat), 1)
        distribution = {label: float(w) for label, w in zip(labels, winners, strict=True)}
    return OutputProfile(
        name=name,
        mean=[float(v) for v in flat.mean(axis=0)],
        std=[float(v) for v in flat.std(axis=0)],
        class_distribution=distribution,
        confidence_edges=None if confidences is None else list(CONFIDENCE_EDGES),
        confidence_histogram=None
        if confidences is None
        else [float(h) for h in histogram(confidences, CONFIDENCE_EDGES)],
    )


def reference_profile(
    windows: npt.ArrayLike,
    channel_names: Sequence[str],
    *,
    outputs: dict[str, npt.ArrayLike] | None = None,
    labels: Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
    source: str = "",
) -> ReferenceProfile:
    """Profile raw reference ``windows`` (N, L, C) and, optionally, the model's outputs on them.

    Samples shared by overlapping windows count once per window, exactly as the live windows
    the drift monitor compares against them do.
    """
    arr = np.asarray(windows, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != len(channel_names):
        raise ValueError(
            f"reference windows must be (N, window_length, {len(channel_names)}); got shape {arr.shape}"
        )
    per_channel = arr.reshape(-1, arr.shape[2])
    return ReferenceProfile(
        source=source,
        windows=int(arr.shape[0]),
        samples=int(per_channel.shape[0]),
        channels=[_channel_profile(n, per_channel[:, i], bins) for i, n in enumerate(channel_names)],
        outputs=[output_profile(name, v, labels) for name, v in (outputs or {}).items()],
        correlation=[[float(v) for v in row] for row in correlation_matrix(per_channel)],
    )
