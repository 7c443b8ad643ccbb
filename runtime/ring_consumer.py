"""The consumer side of :class:`~edgefleet.runtime.ringbuffer.StreamBuffer`: popping windows.

:class:`RingConsumer` is the part of ``StreamBuffer`` the batcher's thread runs: it takes the
complete windows (``pop_batch``, ``pop_windows``), copies them out of the ring in one numpy
operation per run of windows, with their codes when an encoder is attached, moves
``next_start`` / ``decided`` forward and wakes a producer blocked under ``block``. The
counters and the continuity rule are described in :mod:`edgefleet.runtime.ringbuffer`;
``StreamBuffer`` inherits this class (a mixin: no extra call on the hot path), and the
attributes declared below are set by ``StreamBuffer.__init__``.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import numpy.typing as npt

from edgefleet.runtime.encoding import CodeRing
from edgefleet.runtime.windows import Segment, Window, WindowBatch, cut_windows
from edgefleet.types import AnyArray, FloatArray

__all__ = ["RingConsumer"]


class RingConsumer:
    """Pops windows out of a StreamBuffer's ring (see the module doc)."""

    name: str
    capacity: int
    window_length: int
    hop: int
    _data: FloatArray
    _ts: npt.NDArray[np.float64]
    _ready: npt.NDArray[np.float64]
    _sliding: FloatArray
    _lock: threading.Lock
    _space: threading.Condition
    _codes: CodeRing | None
    _write: int
    _waiting: bool
    _resume_room: int
    _next_start: int
    _decided: int
    _covered: int
    _lost: int
    _windows: int
    _gap_flag: bool
    _gaps: deque[int]

    def pop_windows(self, max_windows: int) -> list[Window]:
        """Remove and return up to ``max_windows`` complete windows, oldest first.

        Each window's ``data`` is a contiguous ``(window_length, channels)`` row of one array
        copied out of the ring in one gather (see :meth:`pop_batch`, the batch-level form).
        """
        batch = self.pop_batch(max_windows)
        return [] if batch is None else batch.windows

    def pop_batch(self, max_windows: int) -> WindowBatch | None:
        """Remove up to ``max_windows`` complete windows, oldest first, as one :class:`WindowBatch`.

        The same windows :meth:`pop_windows` would return, without a Python object per window:
        ``data`` is ``(N, window_length, channels)`` float32 copied out of the ring with one numpy
        operation per run of windows (one run unless a gap splits them). None when none is ready.
        """
        if max_windows <= 0:
            return None
        length, hop = self.window_length, self.hop
        segments: list[Segment] = []
        taken = 0
        batch: WindowBatch | None = None
        with self._lock:
            write = self._write  # read before the gaps: a gap below it is already published
            gaps = self._gaps
            start = self._next_start
            if not gaps:
                # the common case, the loop below without a gap: one run of windows, or none
                avail = write - start - length
                if avail < 0:
                    return None  # nothing popped, so no room freed for a blocked producer
                count = min(max_windows, avail // hop + 1)
                last_end = start + (count - 1) * hop + length
                decided = self._decided
                self._covered += last_end - (start if start > decided else decided)
                self._decided = last_end
                data, start_ts, end_ts, ready = self._gather(start, count)
                codes = None if self._codes is None else self._gather_codes(self._codes, start, count, write)
                seq0 = self._windows
                self._windows = seq0 + count
                segment: tuple[Segment, ...] = ((start, count, self._gap_flag),)
                self._gap_flag = False
                start += count * hop
                self._next_start = start
                if self._waiting and self.capacity - (write - start) >= self._resume_room:
                    self._waiting = False
                    self._space.notify()
                return WindowBatch(self.name, seq0, hop, segment, data, start_ts, end_ts, ready, codes)
            while taken < max_windows:
                if gaps:
                    while gaps and gaps[0] <= start:
                        gaps.popleft()
                        self._gap_flag = True
                    if gaps and gaps[0] < start + length:
                        # this window would straddle a gap: restart the grid after it
                        start = gaps.popleft()
                        self._gap_flag = True
                        if start > self._decided:
                            self._lost += start - self._decided
                            self._decided = start
                        continue
                limit = min(write, gaps[0]) if gaps else write  # windows end at or before the gap
                if start + length > limit:
                    break
                count = min(max_windows - taken, (limit - start - length) // hop + 1)
                segments.append((start, count, self._gap_flag))
                self._gap_flag = False
                taken += count
                last_end = start + (count - 1) * hop + length
                self._covered += last_end - max(start, self._decided)
                self._decided = last_end
                start += count * hop
            if segments:
                # copy before publishing next_start: until then the producer cannot overwrite the rows
                batch = self._cut(segments, taken)
            self._next_start = start
            # wake a blocked producer once there is the room it waits for (see _push_blocking)
            if self._waiting and self.capacity - (write - start) >= self._resume_room:
                self._waiting = False  # once: later pops before the producer runs need not notify
                self._space.notify()
        return batch

    def _cut(self, segments: list[Segment], total: int) -> WindowBatch:
        """Copy the windows of ``segments`` out of the ring; lock held."""
        ring = self._codes
        codes: AnyArray | None = None
        if len(segments) == 1:
            start, count, _ = segments[0]
            data, start_ts, end_ts, ready = self._gather(start, count)
            if ring is not None:
                codes = self._gather_codes(ring, start, count, self._write)
        else:
            pieces = [self._gather(start, count) for start, count, _ in segments]
            data = np.concatenate([p[0] for p in pieces])
            start_ts = np.concatenate([p[1] for p in pieces])
            end_ts = np.concatenate([p[2] for p in pieces])
            ready = np.concatenate([p[3] for p in pieces])
            # the later segments start later: the first one decides whether every row has codes
            if ring is not None and self._gather_codes(ring, segments[0][0], 0, self._write) is not None:
                cap, hop = self.capacity, self.hop
                codes = np.concatenate(
                    [cut_windows(ring.rows, ring.sliding, s % cap, n, hop) for s, n, _ in segments]
                )
        seq0 = self._windows
        self._windows += total
        return WindowBatch(self.name, seq0, self.hop, tuple(segments), data, start_ts, end_ts, ready, codes)

    def _gather_codes(self, ring: CodeRing, start: int, count: int, write: int) -> AnyArray | None:
        """The codes of ``count`` windows from ``start`` (lock held); None when a row has none.

        First encodes the rows published since the last pop, in one call (two on wrap-around):
        each sample is quantized once however many windows overlap it. Rows from ``start`` up to
        ``write`` stay in place until ``next_start`` passes them, so their codes stay valid too.
        """
        low = max(ring.encoded_upto, start)
        if low < write:
            ring.encode(self._data, low, write)
        if start < ring.valid_from:
            return None
        if not count:
            return ring.rows[:0]
        return cut_windows(ring.rows, ring.sliding, start % self.capacity, count, self.hop)

    def _gather(
        self, start: int, count: int
    ) -> tuple[FloatArray, npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``count`` windows starting at ``start`` (hop apart): data and metadata, owned copies."""
        cap, length, hop = self.capacity, self.window_length, self.hop
        p0 = start % cap
        last0 = p0 + length - 1
        span = (count - 1) * hop + 1
        data: FloatArray = cut_windows(self._data, self._sliding, p0, count, hop)
        if last0 + span <= cap:
            return (
                data,
                self._ts[p0 : p0 + span : hop].copy(),
                self._ts[last0 : last0 + span : hop].copy(),
                self._ready[last0 : last0 + span : hop].copy(),
            )
        # the metadata: one gather of the few window starts and ends, wrapping around the ring
        firsts = np.arange(p0, p0 + span, hop)
        lasts = firsts + (length - 1)
        ts = self._ts
        return (
            data,
            ts.take(firsts, mode="wrap"),
            ts.take(lasts, mode="wrap"),
            self._ready.take(lasts, mode="wrap"),
        )

    def windows_ready(self) -> int:
        """How many windows could be popped now (an estimate that ignores pending gaps)."""
        avail = self._write - self._next_start - self.window_length
        return 0 if avail < 0 else avail // self.hop + 1
