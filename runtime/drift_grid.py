"""Bin look-up for the drift counter: global bin index of finite samples by table look-up.

Split from :mod:`edgefleet.runtime.drift_stats` (counting and scoring) because it is the one
hot loop of counting, with its own exactness argument.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    to it; a cell that holds an edge (with a margin far wider than rounding) is marked -1 and its
    samples are placed by ``searchsorted``, so the result always equals ``searchsorted`` on the
    edges. Below the range everything is bin 0 and above it the last bin (the open end bins).
    This replaces one binary search per value (the monitor's main cost) with a few passes.
    """

    def __init__(self, inner: Sequence[F64Array], bins: int) -> None:
        self.inner = list(inner)
        self.bins = bins
        channels = len(self.inner)
        self.cells = _GRID_CELLS + 2
        self.lo = np.zeros(channels)
        self.scale = np.ones(channels)
        lut = np.full((channels, self.cells), -1, dtype=np.int64)
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
            inside = np.where(left == right, left + c * bins, -1)
            lut[c, 0] = c * bins  # below lo: under the first edge
            lut[c, 1:-1] = inside
            lut[c, -1] = c * bins + bins - 1  # above hi: over the last edge
        self.lut = lut.ravel()
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

    def bin_of(self, data: F64Array) -> IntArray:
        """``(n, channels)`` finite samples -> ``(n, channels)`` global bin indices."""
        n, channels = data.shape
        lo, scale, offsets = self._rows(n)
        flat = np.ascontiguousarray(data).ravel()
        z = flat - lo
        z *= scale
        z += 1.0
        np.clip(z, 0.0, self.cells - 1, out=z)
        cell = z.astype(np.int64)
        cell += offsets
        index: IntArray = self.lut[cell]
        ambiguous = np.flatnonzero(index < 0)
        if ambiguous.size:
            cols = ambiguous % channels
            for c in range(channels):
                at = ambiguous[cols == c]
                if at.size:
                    index[at] = np.searchsorted(self.inner[c], flat[at], side="right") + c * self.bins
        return index.reshape(n, channels)
