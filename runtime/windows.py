"""Windows cut out of a stream: one at a time (:class:`Window`) or a whole pop at once (:class:`WindowBatch`).

:class:`WindowBatch` is the batch-level form :meth:`StreamBuffer.pop_batch
<edgefleet.runtime.ringbuffer.StreamBuffer.pop_batch>` returns: the data of every window as one
``(N, window_length, channels)`` float32 array and the metadata as arrays, so the hot path does a
constant amount of Python work per batch instead of per window. Per-window :class:`Window`
objects are built only when someone reads :attr:`WindowBatch.windows`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgefleet.types import FloatArray

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
    """

    __slots__ = ("_windows", "data", "end_ts", "hop", "ready_at", "segments", "seq0", "start_ts", "stream")

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
    ) -> None:
        self.stream = stream
        self.seq0 = seq0
        self.hop = hop
        self.segments = segments
        self.data = data
        self.start_ts = start_ts
        self.end_ts = end_ts
        self.ready_at = ready_at
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
