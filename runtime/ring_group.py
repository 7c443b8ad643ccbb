"""Streams of one shape held in one array, popped together: one gather for all their windows.

An agent usually feeds one model from many streams with the same window shape (channels,
window length, hop, ring capacity). Each keeps its own :class:`StreamBuffer` (its own counters,
backpressure, gaps and window sequence numbers), but a :class:`RingGroup` gives the rings one
backing array, ``(streams, capacity, channels)``, so that when every stream of the group has
whole windows ready the consumer takes them all with :meth:`RingGroup.pop`: one numpy gather
of every stream's windows into one ``(streams * count, window_length, channels)`` batch,
instead of one ``pop_batch`` (a lock, a slice, four copies and a result object) per stream.

The group pop is a fast path, never a different behaviour: it takes the same windows a
``pop_batch(count)`` of each stream would (the oldest ``count`` of each, with the same
``seq``, timestamps, ``ready_at`` and counters), and it declines (returns None) whenever a
stream needs the general path: a pending gap, an input encoder, or fewer than ``count``
whole windows. The caller then pops stream by stream as before.

Streams need not be in step: each stream's windows are read at its own ring position (the
gather indexes rows modulo the capacity, so a window across the ring's end costs nothing extra).
Streams that are in step (every one at the same ring rows: sampled together, or replayed at one
rate from one start) are copied out with one slice across all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edgefleet.runtime.ringbuffer import StreamBuffer
from edgefleet.runtime.windows import Segment, WindowBatch
from edgefleet.types import FloatArray

__all__ = ["GroupPop", "RingGroup"]


class GroupPop:
    """``count`` windows of every stream of a group. ``data`` holds all of them stream after
    stream, and the metadata arrays are in the same order, ready for a
    :class:`~edgefleet.runtime.batcher.Batch`. ``streams`` are the group's stream names (the same
    tuple for every pop of a group), ``starts`` the sample index of each stream's first window
    (its other windows follow ``hop`` apart); :attr:`window_streams` names each window's stream.

    :attr:`parts` (``parts[i]`` is stream ``i``'s windows as a :class:`WindowBatch` of views of
    ``data``) is built on first use only: a batch whose results are made from the arrays (the
    pipeline's hot path) never needs one object and four array views per stream.
    """

    __slots__ = (
        "_parts",
        "_segments",
        "count",
        "data",
        "end_ts",
        "hop",
        "ready_at",
        "seq",
        "seq0s",
        "start_ts",
        "starts",
        "streams",
    )

    def __init__(
        self,
        streams: tuple[str, ...],
        seq0s: list[int],
        segments: list[Segment],
        starts: npt.NDArray[np.int64],
        count: int,
        hop: int,
        data: FloatArray,
        seq: npt.NDArray[np.int64],
        start_ts: npt.NDArray[np.float64],
        end_ts: npt.NDArray[np.float64],
        ready_at: npt.NDArray[np.float64],
    ) -> None:
        self.streams = streams
        self.seq0s = seq0s
        self._segments = segments
        self.starts = starts
        self.count = count
        self.hop = hop
        self.data = data
        self.seq = seq
        self.start_ts = start_ts
        self.end_ts = end_ts
        self.ready_at = ready_at
        self._parts: list[WindowBatch] | None = None

    @property
    def parts(self) -> list[WindowBatch]:
        """One :class:`WindowBatch` per stream, in the group's order (views of the arrays)."""
        if self._parts is None:
            n, hop = self.count, self.hop
            data, start_ts, end_ts, ready = self.data, self.start_ts, self.end_ts, self.ready_at
            self._parts = [
                WindowBatch(
                    name,
                    seq0,
                    hop,
                    (segment,),
                    data[i * n : (i + 1) * n],
                    start_ts[i * n : (i + 1) * n],
                    end_ts[i * n : (i + 1) * n],
                    ready[i * n : (i + 1) * n],
                )
                for i, (name, seq0, segment) in enumerate(
                    zip(self.streams, self.seq0s, self._segments, strict=True)
                )
            ]
        return self._parts

    @property
    def window_streams(self) -> list[str]:
        """The stream of every window, in order."""
        n = self.count
        return [name for name in self.streams for _ in range(n)]

    @property
    def oldest_ready_at(self) -> float:
        """The earliest ``ready_at``: each stream's first window is its oldest."""
        return float(self.ready_at[:: self.count].min())

    def __len__(self) -> int:
        return int(self.data.shape[0])


def _shape(buf: StreamBuffer) -> tuple[int, int, int, int]:
    return (buf.capacity, buf.channels, buf.window_length, buf.hop)


class RingGroup:
    """Gives ``buffers`` (two or more, one shape, nothing pushed yet) one backing array."""

    def __init__(self, buffers: Sequence[StreamBuffer]) -> None:
        buffers = list(buffers)
        if len(buffers) < 2:
            raise ValueError(f"a ring group needs two or more streams, got {len(buffers)}")
        shapes = {_shape(b) for b in buffers}
        if len(shapes) != 1:
            raise ValueError(
                "a ring group needs one (capacity, channels, window_length, hop) for every stream, got "
                + ", ".join(f"{b.name}: {_shape(b)}" for b in buffers)
            )
        used = [b.name for b in buffers if b._write or b._codes is not None]
        if used:
            raise ValueError(f"a ring group takes fresh buffers only; already used: {', '.join(used)}")
        self.buffers = buffers
        cap, channels, length, hop = shapes.pop()
        self.capacity, self.window_length, self.hop = cap, length, hop
        count = len(buffers)
        self._data: FloatArray = np.zeros((count, cap, channels), dtype=np.float32)
        self._ts: npt.NDArray[np.float64] = np.zeros((count, cap), dtype=np.float64)
        self._ready: npt.NDArray[np.float64] = np.zeros((count, cap), dtype=np.float64)
        for i, buf in enumerate(buffers):
            # The buffer keeps writing its own rows through these views; nothing else changes for it.
            # Rebound here rather than passed to StreamBuffer so that a buffer needs no group to exist.
            buf._data = self._data[i]
            buf._ts = self._ts[i]
            buf._ready = self._ready[i]
            buf._sliding = np.lib.stride_tricks.sliding_window_view(buf._data, length, axis=0).transpose(
                0, 2, 1
            )
        self._locks = [b._lock for b in buffers]
        self.streams = tuple(b.name for b in buffers)
        # gathers index the arrays flattened over (stream, row): one ``take`` is several times
        # cheaper than numpy's general two-axis fancy indexing
        self._flat_data = self._data.reshape(count * cap, channels)
        self._flat_ts = self._ts.reshape(count * cap)
        self._flat_ready = self._ready.reshape(count * cap)
        # every stream's windows at once: (stream, first row, window row, channel), for streams in step
        self._sliding = np.lib.stride_tricks.sliding_window_view(self._data, length, axis=1).transpose(
            0, 1, 3, 2
        )
        self._row0 = (np.arange(count, dtype=np.int64) * cap)[:, None]
        self._offsets = np.arange(length, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.buffers)

    def pop(self, max_count: int) -> GroupPop | None:
        """The oldest windows of every stream, as many of each as the stream with the fewest has
        (at most ``max_count``); None (nothing popped) when a stream has none, a pending gap or
        an input encoder: then pop stream by stream."""
        if max_count < 1:
            return None
        buffers = self.buffers
        length, hop, cap = self.window_length, self.hop, self.capacity
        for buf in buffers:
            # Without the locks first: a consumer that looks before the windows are there (each
            # batch starts so) declines for the price of a read. A stale read only sees fewer.
            if buf._write - buf._next_start < length:
                return None
        locks = self._locks
        for lock in locks:  # always in this order; a producer only ever holds its own
            lock.acquire()
        try:
            starts: list[int] = []
            fewest = max_count - 1  # in hops beyond the first window
            for buf in buffers:
                write = buf._write  # read before the gaps, as pop_batch does
                if buf._gaps or buf._codes is not None:
                    return None
                start = buf._next_start
                beyond = write - start - length
                if beyond < 0:
                    return None
                if beyond < fewest * hop:
                    fewest = beyond // hop
                starts.append(start)
            count = fewest + 1
            need = fewest * hop + length
            # copied out before next_start moves: until then no producer overwrites these rows
            data, start_ts, end_ts, ready = self._gather(starts, count)
            segments: list[Segment] = []
            seq0s: list[int] = []
            for i, buf in enumerate(buffers):
                start = starts[i]
                last_end = start + need
                decided = buf._decided
                buf._covered += last_end - (start if start > decided else decided)
                buf._decided = last_end
                seq0 = buf._windows
                buf._windows = seq0 + count
                seq0s.append(seq0)
                segments.append((start, count, buf._gap_flag))
                buf._gap_flag = False
                start += count * hop
                buf._next_start = start
                if buf._waiting and cap - (buf._write - start) >= buf._resume_room:
                    buf._waiting = False
                    buf._space.notify()
        finally:
            for lock in locks:
                lock.release()
        if count == 1:
            seq = np.array(seq0s, dtype=np.int64)
        else:
            seq = (np.array(seq0s, dtype=np.int64)[:, None] + np.arange(count, dtype=np.int64)).ravel()
        first_index = np.array(starts, dtype=np.int64)
        return GroupPop(
            self.streams, seq0s, segments, first_index, count, hop, data, seq, start_ts, end_ts, ready
        )

    def _gather(
        self, starts: list[int], count: int
    ) -> tuple[FloatArray, npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``count`` windows of each stream from its ``starts``: their samples (stream after
        stream), first and last timestamps and ready times (hold the streams' locks).

        Where no stream's windows run across its ring's end (nearly always: the ring holds many
        windows), each stream's windows are one basic slice of its window view, copied out in one
        ``concatenate``, and the times are read at flat indices built in Python: fewer distinct
        numpy operations than the general gather. On a core that was idle since the last tick each
        distinct operation costs tens of microseconds the first time, whatever its size.
        """
        length, hop, cap = self.window_length, self.hop, self.capacity
        span = (count - 1) * hop + length
        positions = [start % cap for start in starts]
        if max(positions) + span <= cap:
            stop = (count - 1) * hop + 1
            first = positions[0]
            if positions.count(first) == len(positions):
                # Streams in step (sampled together, or started together at one rate): every
                # stream's windows lie at the same rows, so each array is one slice across streams.
                # copy()/flatten() always copy: a view would see the rings move on after the pop.
                last = first + length - 1
                data = self._sliding[:, first : first + stop : hop].copy()
                return (
                    data.reshape(-1, length, data.shape[3]),
                    self._ts[:, first : first + stop : hop].flatten(),
                    self._ts[:, last : last + stop : hop].flatten(),
                    self._ready[:, last : last + stop : hop].flatten(),
                )
            data = np.concatenate(
                [buf._sliding[p : p + stop : hop] for buf, p in zip(self.buffers, positions, strict=True)]
            )
            steps = range(0, count * hop, hop)
            first_rows = [i * cap + p + step for i, p in enumerate(positions) for step in steps]
            lasts = np.array([row + length - 1 for row in first_rows], dtype=np.int64)
            start_ts = self._flat_ts.take(np.array(first_rows, dtype=np.int64))
            return data, start_ts, self._flat_ts.take(lasts), self._flat_ready.take(lasts)
        first_index = np.array(starts, dtype=np.int64)
        firsts = first_index[:, None] + np.arange(0, count * hop, hop)
        row0 = self._row0
        lasts = (firsts + (length - 1)) % cap + row0
        rows = (firsts[:, :, None] + self._offsets) % cap + row0[:, :, None]
        flat = self._flat_data
        data = flat.take(rows.reshape(-1), axis=0).reshape(len(self.buffers) * count, length, flat.shape[1])
        start_ts = self._flat_ts.take(firsts % cap + row0).ravel()
        return data, start_ts, self._flat_ts.take(lasts).ravel(), self._flat_ready.take(lasts).ravel()
