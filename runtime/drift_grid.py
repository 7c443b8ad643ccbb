"""Bin look-up for the drift counter: global bin index of finite samples by table look-up.

Split from :mod:`edgefleet.runtime.drift_stats` (counting and scoring) because it is the one
hot loop of counting, with its own exactness argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["GridIndex"]

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]

_GRID_CELLS = 4096


class GridIndex:
    """Global bin index (``channel * bins + bin``) of finite samples by table look-up.

    Each channel's edge range (widened by 1 % on both sides) is cut into ``_GRID_CELLS`` equal
    cells, plus one cell below and one above. A cell lying wholly inside one bin maps straight
    to it. A cell that holds edges (with a margin far wider than rounding) maps to an entry of a
    small side table: when its edges are one value ``e`` (quantile edges repeat where the
    reference has repeated values), a sample's bin is the cell's first bin plus the number of
    those edges if the sample is ``>= e``; only a cell holding several different edges is placed
    by ``searchsorted``. The result always equals ``searchsorted`` on the edges. Below the range
    everything is bin 0 and above it the last bin (the open end bins).

    Samples on an edge are common (sensors repeat values, and quantile edges are sample values),
    so a tenth of the samples can fall in cells with an edge: resolving those with one compare
    rather than a ``searchsorted`` per channel halves the cost of counting.
    """

    def __init__(self, inner: Sequence[F64Array], bins: int) -> None:
        self.inner = list(inner)
        self.bins = bins
        channels = len(self.inner)
        self.cells = _GRID_CELLS + 2
        self.lo = np.zeros(channels)
        self.scale = np.ones(channels)
        lut = np.full((channels, self.cells), -1, dtype=np.int64)
        edge_values: list[F64Array] = []
        first_bins: list[IntArray] = []
        repeats: list[IntArray] = []
        entries = 0
        for c, edges in enumerate(self.inner):
            if edges.size == 0:
                lut[c] = c * bins  # a single bin: everything is bin 0
                continue
            span = float(edges[-1] - edges[0]) or max(abs(float(edges[0])), 1.0)
            lo, hi = float(edges[0]) - 0.01 * span, float(edges[-1]) + 0.01 * span
            self.lo[c], self.scale[c] = lo, _GRID_CELLS / (hi - lo)
            width = 1.0 / self.scale[c]
            k = np.arange(_GRID_CELLS, dtype=np.float64)
            margin = 1e-6 * width
            left = np.searchsorted(edges, lo + k * width - margin, side="right")
            right = np.searchsorted(edges, lo + (k + 1) * width + margin, side="right")
            inside = left + c * bins
            held = np.flatnonzero(left != right)  # cells holding edges
            # one distinct edge value in the cell: the first and the last of its edges are equal
            single = edges[left[held]] == edges[right[held] - 1]
            inside[held] = -1 - (entries + np.arange(held.size))
            edge_values.append(np.where(single, edges[left[held]], np.nan))
            first_bins.append(left[held] + c * bins)
            repeats.append(np.where(single, right[held] - left[held], -1))
            entries += held.size
            lut[c, 0] = c * bins  # below lo: under the first edge
            lut[c, 1:-1] = inside
            lut[c, -1] = c * bins + bins - 1  # above hi: over the last edge
        self.lut = lut.ravel()
        self._edge = np.concatenate(edge_values) if edge_values else np.zeros(0)
        self._first = np.concatenate(first_bins) if first_bins else np.zeros(0, dtype=np.int64)
        self._repeats = np.concatenate(repeats) if repeats else np.zeros(0, dtype=np.int64)
        self._several = bool((self._repeats < 0).any())  # cells that need searchsorted
        self.row_offsets = np.arange(channels, dtype=np.int64) * self.cells
        self._tiled_rows = 0
        self._lo_t = self._scale_t = np.zeros(0)
        self._offset_t = np.zeros(0, dtype=np.int64)

    def _rows(self, n: int) -> tuple[F64Array, F64Array, IntArray]:
        # Per-channel constants tiled over n rows: elementwise passes over one long row run
        # several times faster than broadcasting a (channels,) row over (n, channels).
        if self._tiled_rows < n:
            rows = max(n, 2 * self._tiled_rows)
            self._lo_t = np.tile(self.lo, rows)
            self._scale_t = np.tile(self.scale, rows)
            self._offset_t = np.tile(self.row_offsets, rows)
            self._tiled_rows = rows
        size = n * len(self.lo)
        return self._lo_t[:size], self._scale_t[:size], self._offset_t[:size]

    def bin_of(self, data: npt.NDArray[np.floating[Any]]) -> IntArray:
        """``(n, channels)`` finite samples -> ``(n, channels)`` global bin indices."""
        n, channels = data.shape
        lo, scale, offsets = self._rows(n)
        flat = np.ascontiguousarray(data).ravel()
        z = np.subtract(flat, lo)  # float64 whatever the samples' type: the margins assume it
        z *= scale
        z += 1.0
        np.clip(z, 0.0, self.cells - 1, out=z)
        cell = z.astype(np.int64)
        cell += offsets
        index: IntArray = self.lut[cell]
        held = np.flatnonzero(index < 0)
        if held.size:
            entry = -1 - index[held]
            values = flat[held]
            index[held] = self._first[entry] + self._repeats[entry] * (values >= self._edge[entry])
            if self._several:
                several = held[self._repeats[entry] < 0]
                cols = several % channels
                for c in range(channels):
                    at = several[cols == c]
                    if at.size:
                        index[at] = np.searchsorted(self.inner[c], flat[at], side="right") + c * self.bins
        return index.reshape(n, channels)
