"""Windows cut out of a stream: one at a time (:class:`Window`) or a whole pop at once (:class:`WindowBatch`).

:class:`WindowBatch` is the batch-level form :meth:`StreamBuffer.pop_batch
<edgefleet.runtime.ringbuffer.StreamBuffer.pop_batch>` returns: the data of every window as one
``(N, window_length, channels)`` float32 array and the metadata as arrays, so the hot path does a
constant amount of Python work per batch instead of per window. Per-window :class:`Window`
objects are built only when someone reads :attr:`WindowBatch.windows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from edgefleet.types import AnyArray, FloatArray

_G = TypeVar("_G", bound=np.generic)

__all__ = ["Segment", "Window", "WindowBatch"]

Segment = tuple[int, int, bool]
"""``(start_index, count, gap_before)``: ``count`` windows one hop apart, the first at ``start_index``."""


@dataclass(eq=False, slots=True)
class Window:
    """One window of a stream, ready for the model.

    ``data`` is ``(window_length, channels)`` float32, C-contiguous and owned by the window.
    ``seq`` counts the stream's emitted windows from 0. ``start_index`` is the accepted-sample
    index of ``data[0]``. ``gap_before`` is True when samples were lost between the previous
    window of this stream and this one (a stateful model should reset its state).
    """

    stream: str
    seq: int
    start_ts: float
    end_ts: float
    data: FloatArray
    ready_at: float
    start_index: int = 0
    gap_before: bool = False


class WindowBatch:
    """Consecutive windows of one stream, oldest first, as arrays.

    ``data[i]`` is window ``seq0 + i`` of ``stream``; ``start_ts``, ``end_ts`` and ``ready_at`` are
    float64 arrays of length N. The windows are grouped in :attr:`segments`: runs one hop apart,
    a new run starting after each gap (its first window has ``gap_before``). ``data`` is owned by
    the batch (copied out of the ring), C-contiguous; treat it as read-only once windows are shared.
    ``codes`` is the same windows quantized for the model by the ring's input encoder
    (:mod:`edgefleet.runtime.encoding`), or None when the ring has none or a row had no code.
    """

    __slots__ = (
        "_windows",
        "codes",
        "data",
        "end_ts",
        "hop",
        "ready_at",
        "segments",
        "seq0",
        "start_ts",
        "stream",
    )

    def __init__(
        self,
        stream: str,
        seq0: int,
        hop: int,
        segments: tuple[Segment, ...],
        data: FloatArray,
        start_ts: npt.NDArray[np.float64],
        end_ts: npt.NDArray[np.float64],
        ready_at: npt.NDArray[np.float64],
        codes: AnyArray | None = None,
    ) -> None:
        self.stream = stream
        self.seq0 = seq0
        self.hop = hop
        self.segments = segments
        self.data = data
        self.start_ts = start_ts
        self.end_ts = end_ts
        self.ready_at = ready_at
        self.codes = codes
        self._windows: list[Window] | None = None

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def oldest_ready_at(self) -> float:
        """``ready_at`` of the first window: arrival times only grow along a stream."""
        return float(self.ready_at[0])

    @property
    def seq(self) -> npt.NDArray[np.int64]:
        return np.arange(self.seq0, self.seq0 + len(self), dtype=np.int64)

    @property
    def start_index(self) -> npt.NDArray[np.int64]:
        hop = self.hop
        parts = [np.arange(s, s + n * hop, hop, dtype=np.int64) for s, n, _ in self.segments]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def gap_before(self) -> npt.NDArray[np.bool_]:
        flags = np.zeros(len(self), dtype=np.bool_)
        at = 0
        for _, n, gap in self.segments:
            flags[at] = gap
            at += n
        return flags

    @property
    def windows(self) -> list[Window]:
        """One :class:`Window` per row, built on first access; each ``data`` is a view of ``data``."""
        if self._windows is None:
            self._windows = self._build_windows()
        return self._windows

    def _build_windows(self) -> list[Window]:
        name, hop = self.stream, self.hop
        indices: list[int] = []
        gaps: list[int] = []
        for start, count, gap in self.segments:
            if gap:
                gaps.append(len(indices))
            indices += range(start, start + count * hop, hop)
        seq0 = self.seq0
        # iterating ``data`` yields its rows as contiguous views, cheaper than indexing each
        windows = [
            Window(name, seq, t0, t1, rows, ready, index)
            for seq, t0, t1, rows, ready, index in zip(
                range(seq0, seq0 + len(indices)),
                self.start_ts.tolist(),
                self.end_ts.tolist(),
                self.data,
                self.ready_at.tolist(),
                indices,
                strict=True,
            )
        ]
        for k in gaps:
            windows[k].gap_before = True
        return windows

    def __repr__(self) -> str:
        return f"WindowBatch({self.stream!r}, seq {self.seq0}..{self.seq0 + len(self) - 1})"


def cut_windows(
    ring: npt.NDArray[_G], sliding: npt.NDArray[_G], p0: int, count: int, hop: int
) -> npt.NDArray[_G]:
    """``count`` windows, ``hop`` rows apart, from row ``p0`` of a ring of rows; an owned copy.

    ``sliding`` is the ring's ``sliding_window_view`` as ``(positions, window_length, channels)``;
    the ring may hold samples or their codes (see :mod:`edgefleet.runtime.encoding`).
    """
    cap, channels = ring.shape
    length = sliding.shape[1]
    span = (count - 1) * hop + 1
    if p0 + length - 1 + span <= cap:
        # no wrap: the windows are a strided slice of the ring's sliding-window view, copied once
        windows: npt.NDArray[_G] = sliding[p0 : p0 + span : hop].copy()
        return windows
    # the run wraps around the ring's end: unwrap its rows with two slice copies, then cut
    # the windows out of that (a fancy-index gather of every row is several times slower)
    rows = span - 1 + length
    head = cap - p0  # rows before the end; fewer than ``rows`` since the run wraps
    if hop == length:  # non-overlapping windows: the unwrapped rows are the batch itself
        windows = np.empty((count, length, channels), ring.dtype)
        flat = windows.reshape(rows, channels)
    else:
        flat = np.empty((rows, channels), ring.dtype)
    flat[:head] = ring[p0:]
    flat[head:] = ring[: rows - head]
    if hop == length:
        return windows
    row, col = flat.strides
    view: npt.NDArray[_G] = np.ndarray((count, length, channels), ring.dtype, flat, 0, (hop * row, row, col))
    return view.copy()
