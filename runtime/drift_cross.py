"""Cross-channel drift statistics: a channel's spread and correlations against the other channels'.

Per-channel marginal statistics (PSI, JS, KS) miss two realistic sensor faults on real data
(docs/drift.md, "the six faults"): a gain on a gyroscope axis, whose distribution is a narrow peak
at zero with long tails, and two axes of similar distribution swapped. Both are plain to see
*across* channels, and both statistics below are computed from counts that merge by addition
(per-channel sums and sums of squares, and the moment matrix of :class:`DriftCounts`):

* **scale** = ``|log(std / reference std) - median over channels of the same|``. How far a
  channel's spread moved *relative to the other channels'*. The activity mix of a report moves
  every channel's spread together (more running: every axis wider), which swamps an absolute
  std ratio; a gain on one axis moves that one alone. Needs three channels with a spread.
* **swap** = how much closer the channel's live correlations with the other channels come to
  the reference's when it is taken for another channel. For every pair ``(a, b)`` the
  Euclidean distance between the live correlation rows of ``a`` and ``b`` (over the remaining
  channels) and the reference rows of ``a`` and ``b`` is compared with the distance to the rows of
  ``b`` and ``a``; the best pair is matched, its two channels scored with the gain and taken out,
  and the search repeats on the rest. 0 when no exchange fits better. Needs the reference
  correlation matrix (manifest schema 3) and four channels with a spread.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "SCALE_FLOOR",
    "correlation_from_moments",
    "pack_moments",
    "scale_scores",
    "swap_scores",
    "unpack_moments",
]

SCALE_FLOOR = 1e-3
"""A live std below this share of the reference's counts as this share (a stuck or dead channel
scores ``|log(1e-3)|`` = 6.9 plus the others' median, not infinity)."""

F64Array = npt.NDArray[np.float64]


def scale_scores(stds: Sequence[float | None], reference_stds: Sequence[float]) -> list[float | None]:
    """Per channel, the scale statistic; None where the channel has no live or no reference spread,
    and for every channel when fewer than three have both."""
    logs: list[float | None] = []
    for std, ref in zip(stds, reference_stds, strict=True):
        if std is None or not ref > 0 or not math.isfinite(std):
            logs.append(None)
        else:
            logs.append(math.log(max(std, SCALE_FLOOR * ref) / ref))
    known = [v for v in logs if v is not None]
    if len(known) < 3:
        return [None] * len(logs)
    centre = statistics.median(known)  # numpy's median imports numpy.ma on first use: 0.3 s
    return [None if v is None else abs(v - centre) for v in logs]


def correlation_from_moments(moments: F64Array) -> tuple[F64Array, npt.NDArray[np.bool_]]:
    """Live correlation matrix from a ``(C + 1, C + 1)`` moment matrix, and which channels had a
    spread (rows and columns of the others are 0)."""
    n = float(moments[0, 0])
    channels = moments.shape[0] - 1
    if n < 2:
        return np.zeros((channels, channels)), np.zeros(channels, dtype=bool)
    mean = moments[0, 1:] / n
    cov = moments[1:, 1:] / n - np.outer(mean, mean)
    var = np.diagonal(cov).copy()
    # Relative to the raw second moment: a constant channel leaves only round-off behind.
    valid = var > 1e-12 * np.maximum(np.diagonal(moments[1:, 1:]) / n, 1e-300)
    corr = np.zeros_like(cov)
    scale = np.sqrt(var[valid])
    both = np.ix_(valid, valid)
    corr[both] = cov[both] / np.outer(scale, scale)
    return np.clip(corr, -1.0, 1.0), valid


def pack_moments(moments: F64Array) -> list[float]:
    """The upper triangle (diagonal included, row by row) of a symmetric ``(C + 1, C + 1)`` moment
    matrix: what a drift report carries up, ``(C + 1)(C + 2) / 2`` numbers instead of ``(C + 1)^2``."""
    packed: list[float] = moments[np.triu_indices(moments.shape[0])].tolist()
    return packed


def unpack_moments(packed: Sequence[float], channels: int) -> F64Array:
    """The symmetric moment matrix of :func:`pack_moments`; ValueError when the length does not fit
    ``channels`` or a value is not finite."""
    size = channels + 1
    values = np.asarray(packed, dtype=np.float64)
    if values.shape != (size * (size + 1) // 2,):
        raise ValueError(
            f"{values.size} moments do not fit {channels} channels; expected {size * (size + 1) // 2}"
        )
    if not np.all(np.isfinite(values)) or values[0] < 0:
        raise ValueError("moments must be finite, with a row count of at least 0")
    upper = np.triu_indices(size)
    moments = np.zeros((size, size), dtype=np.float64)
    moments[upper] = values
    moments.T[upper] = values
    return moments


@functools.lru_cache(maxsize=8)
def _pair_masks(channels: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    # not_self[a, b, j]: j is neither a nor b; upper[a, b]: a < b. Read-only: shared between calls.
    index = np.arange(channels)
    not_self = (index[:, None, None] != index[None, None, :]) & (index[None, :, None] != index[None, None, :])
    upper = index[:, None] < index[None, :]
    not_self.flags.writeable = False
    upper.flags.writeable = False
    return not_self, upper


def swap_scores(
    live: F64Array, reference: F64Array, valid: npt.NDArray[np.bool_]
) -> list[tuple[float | None, int | None]]:
    """Per channel ``(swap statistic, index of the channel it was matched with)``; ``(None, None)``
    for channels without a spread, and for all when fewer than four have one."""
    channels = live.shape[0]
    open_ = [int(c) for c in np.flatnonzero(valid)]
    if len(open_) < 4:
        return [(None, None)] * channels
    out: list[tuple[float | None, int | None]] = [
        (0.0, None) if valid[c] else (None, None) for c in range(channels)
    ]
    # err[a, b, j]: squared gap between live channel a's and reference channel b's correlation
    # with channel j; every pair is scored at once (a report close, not a hot path, but cheap).
    err = (live[:, None, :] - reference[None, :, :]) ** 2
    own = np.diagonal(err, axis1=0, axis2=1).T  # own[a, j] = err[a, a, j]
    pair_same = own[:, None, :] + own[None, :, :]
    pair_swapped = err + err.transpose(1, 0, 2)
    not_self, upper = _pair_masks(channels)
    is_open = np.zeros(channels, dtype=bool)
    is_open[open_] = True
    while is_open.sum() >= 3:
        rest = not_self & is_open[None, None, :]
        same = np.sqrt(np.where(rest, pair_same, 0.0).sum(axis=2))
        swapped = np.sqrt(np.where(rest, pair_swapped, 0.0).sum(axis=2))
        gain = np.where(upper & is_open[:, None] & is_open[None, :], same - swapped, 0.0)
        a, b = np.unravel_index(int(np.argmax(gain)), gain.shape)
        best = float(gain[a, b])
        if best <= 0.0:
            break
        out[a], out[b] = (best, int(b)), (best, int(a))
        is_open[[a, b]] = False
    return out
