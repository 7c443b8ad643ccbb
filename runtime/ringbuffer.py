"""Per-stream ring buffer that cuts sliding windows out of a sensor stream.

One :class:`StreamBuffer` per stream. Storage is preallocated once: a ``(capacity, channels)``
float32 sample ring (time-major, so a window is one or two contiguous row slices), a float64
timestamp ring and a float64 ring of ready times. A window's ``ready_at`` is ``clock()`` at the push
that stored its last sample, and only those rows are ever read, so the producer writes a ready time
only at the rows where a window ends (once per completed window, not once per sample).

Indices below are *accepted-sample* indices: the n-th sample the buffer stored is index n.
The buffer keeps three counters:

* ``write``: index of the next sample to store (producer thread only);
* ``next_start``: first sample of the next window to emit (consumer thread; the producer moves it
  forward only under ``drop_oldest``, holding the lock);
* ``decided``: every accepted sample below it is either covered by an emitted window or dropped.

Window continuity (the rule the property tests encode): **a window never contains a dropped
sample and never straddles a gap.** Its ``window_length`` rows are consecutive in the stream as
the producer offered it. ``hop`` must be ``<= window_length``, so without drops every sample is
delivered in at least one window.

* ``drop_oldest`` (default): when storing a sample would overwrite one a pending window still
  needs, ``next_start`` advances by whole hops (the window grid stays aligned) until there is room.
  Samples skipped that no emitted window covered are counted as dropped; the next emitted window
  has ``gap_before=True`` when at least one sample was lost.
* ``drop_newest``: the new samples are refused and counted. The refusal marks a gap; windows that
  end at or before the gap are still emitted, then the window grid restarts at the first sample
  accepted after the gap. Accepted samples before the gap that no window covered (fewer than
  ``window_length`` of them) are dropped too and counted.
* ``block``: the producer waits until the consumer frees room; on ``block_timeout`` (or after
  :meth:`StreamBuffer.close`) the rest are refused exactly as under ``drop_newest``.

Accounting, exact whenever neither thread is inside a call::

    stats.pushed == stats.covered + stats.dropped + stats.pending

``pushed`` counts every sample offered, ``covered`` the distinct samples delivered in windows,
``dropped`` every sample lost to backpressure, ``pending`` the accepted samples that may still be
delivered.

Threading: one producer thread and one consumer thread per buffer. The producer's common path
takes no lock (it only reads ``next_start``, which can only grow, so a stale value under-estimates
the room); ``pop_windows`` holds the lock while it copies, and the producer takes it only to drop
or to wait under ``block``. The consumer side (popping and copying windows out) is
:mod:`edgefleet.runtime.ring_consumer`'s part of the class.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias, TypeVar, cast

import numpy as np
import numpy.typing as npt

from edgefleet.errors import EdgefleetError
from edgefleet.runtime.encoding import CodeRing, InputEncoder
from edgefleet.runtime.ring_consumer import RingConsumer
from edgefleet.runtime.ring_settings import validate_ring_settings
from edgefleet.runtime.windows import Window, WindowBatch
from edgefleet.types import BackpressurePolicy, FloatArray

__all__ = [
    "BufferInputError",
    "BufferStats",
    "Notify",
    "StreamBuffer",
    "Window",
    "WindowBatch",
    "counts_windows",
]

Notify: TypeAlias = threading.Condition | Callable[[], object] | Callable[[int], object]
"""What a buffer signals when a window becomes ready: a Condition (``notify_all``) or a callable
(called with no argument, or with the number of windows when marked :func:`counts_windows`)."""

_CallableT = TypeVar("_CallableT", bound=Callable[..., object])


def counts_windows(listener: _CallableT) -> _CallableT:
    """Mark a notify callable that takes one argument: how many windows the push just completed.

    A listener that knows how many windows it waits for (a :class:`Batcher` filling a batch) can
    then skip waking its consumer until they are there; unmarked callables are called with none.
    """
    listener.counts_windows = True  # type: ignore[attr-defined]
    return listener


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


class BufferInputError(EdgefleetError, ValueError):
    """A pushed sample or block does not have the shape the stream was configured with."""


@dataclass(frozen=True, slots=True)
class BufferStats:
    """A snapshot of one buffer's counters; see the module docstring for the exact invariant."""

    pushed: int
    dropped: int
    windows_emitted: int
    fill: int
    capacity: int
    covered: int = 0
    pending: int = 0
    refused: int = 0


class StreamBuffer(RingConsumer):
    """Preallocated ring buffer of one stream; cuts sliding windows for the batcher."""

    def __init__(
        self,
        name: str,
        channels: int,
        capacity: int,
        *,
        window_length: int,
        hop: int,
        policy: BackpressurePolicy = "drop_oldest",
        notify: Notify | None = None,
        block_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        validate_ring_settings(name, channels, capacity, window_length, hop, policy, block_timeout)
        self.name = name
        self.channels = channels
        self.capacity = capacity
        self.window_length = window_length
        self.hop = hop
        self.policy: BackpressurePolicy = policy
        self.block_timeout = block_timeout
        self._clock = clock
        self._data: FloatArray = np.zeros((capacity, channels), dtype=np.float32)
        self._ts: npt.NDArray[np.float64] = np.zeros(capacity, dtype=np.float64)
        # written only at window-end rows: ``_ready[(end - 1) % capacity]`` for each completed window
        self._ready: npt.NDArray[np.float64] = np.zeros(capacity, dtype=np.float64)
        # every window position that does not wrap, as a (capacity - window_length + 1,
        # window_length, channels) view of the ring: a run of windows is one basic slice of it
        self._sliding: FloatArray = np.lib.stride_tricks.sliding_window_view(
            self._data, window_length, axis=0
        ).transpose(0, 2, 1)
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._closed = False
        # producer-owned
        self._write = 0
        self._refused = 0
        self._announce_at = window_length
        self._last_gap = -1
        self._waiting = False
        # room a producer blocked under ``block`` waits for (lock held to change or read it)
        self._max_resume = capacity - window_length + 1
        self._min_resume = max(1, min(self._max_resume, capacity // 2))
        self._resume_room = 1
        # consumer-owned (the producer touches them under the lock in drop_oldest only)
        self._next_start = 0
        self._decided = 0
        self._covered = 0
        self._lost = 0
        self._windows = 0
        self._gap_flag = False
        # accepted-sample indices just after a loss; appended by the producer, consumed by pop_windows
        self._gaps: deque[int] = deque()
        self._notify: Notify | None = None
        self._signal: Callable[[], object] | None = None
        self._signal_counted: Callable[[int], object] | None = None  # a @counts_windows listener
        self.notify = notify
        # the samples' codes for an integer-input model (attach_encoder), or None
        self._codes: CodeRing | None = None

    def attach_encoder(self, encoder: InputEncoder) -> None:
        """Quantize samples for the model once each (see :mod:`edgefleet.runtime.encoding`).

        From then on popped windows carry their codes (``WindowBatch.codes``), except windows
        with a non-finite value in reach (those take the model's float path). Once per buffer.
        """
        if self._codes is not None:
            raise ValueError(f"stream {self.name!r} already has an input encoder")
        if encoder.window_shape != (self.window_length, self.channels):
            raise ValueError(
                f"stream {self.name!r}: the encoder is for windows {encoder.window_shape}, "
                f"this stream cuts ({self.window_length}, {self.channels})"
            )
        self._codes = CodeRing(encoder, self.capacity, self.window_length)

    @property
    def encoder(self) -> InputEncoder | None:
        return None if self._codes is None else self._codes.encoder

    # -- notification -------------------------------------------------------------------------

    @property
    def notify(self) -> Notify | None:
        return self._notify

    @notify.setter
    def notify(self, target: Notify | None) -> None:
        self._notify = target
        self._signal_counted = None
        if target is None:
            self._signal = None
        elif isinstance(target, threading.Condition):
            cond = target

            def signal() -> None:
                with cond:
                    cond.notify_all()

            self._signal = signal
        elif callable(target):
            if getattr(target, "counts_windows", False):
                self._signal_counted = cast(Callable[[int], object], target)
            self._signal = cast(Callable[[], object], target)  # unused when counted
        else:
            raise TypeError(f"notify must be a threading.Condition, a callable or None, got {target!r}")

    def _publish(self, end: int) -> None:
        """Make the samples below ``end`` visible to the consumer (producer only, data in place)."""
        if end < self._announce_at:
            self._write = end
            return
        # Windows completed: stamp their ready times (at their last rows) *before* publishing
        # ``write``, so pop never reads a stale one, then move to the next grid end and signal.
        # ``_announce_at`` is always the end of the next window pop would emit: the grid only
        # restarts at a refusal, where ``_refuse`` resets it (a drop_oldest skip moves whole hops).
        at, hop, cap = self._announce_at, self.hop, self.capacity
        steps = (end - at) // hop + 1
        self._announce_at = at + steps * hop
        now = self._clock()
        ready = self._ready
        if steps == 1:
            ready[(at - 1) % cap] = now
        else:
            # only ends whose rows are still in the ring (a block longer than the ring skips its head)
            low = end - cap + 1
            if at < low:
                skip = -(-(low - at) // hop)
                at, steps = at + skip * hop, steps - skip
            first = (at - 1) % cap
            last = first + (steps - 1) * hop
            if last < cap:
                ready[first : last + 1 : hop] = now
            else:
                ready.put(np.arange(first, last + 1, hop), now, mode="wrap")
        self._write = end
        counted = self._signal_counted
        if counted is not None:
            counted(steps)
            return
        signal = self._signal
        if signal is not None:
            signal()

    # -- producer side ------------------------------------------------------------------------

    def push(self, sample: npt.ArrayLike, timestamp: float) -> bool:
        """Store one sample (``channels`` values); False when backpressure refused it."""
        try:
            n = len(sample)  # type: ignore[arg-type]
        except TypeError:
            n = -1
        if n != self.channels:
            raise self._shape_error(f"a sample of {self.channels} float values", f"{sample!r}")
        w = self._write
        if w - self._next_start >= self.capacity or self._closed:
            return self._push_slow(np.asarray(sample, dtype=np.float32)[None, :], [timestamp]) == 1
        p = w % self.capacity
        try:
            self._data[p] = sample
        except (ValueError, TypeError):
            raise self._shape_error(f"a sample of {self.channels} float values", f"{sample!r}") from None
        try:
            self._ts[p] = timestamp
        except (ValueError, TypeError):
            raise self._shape_error("a timestamp in epoch seconds", f"{timestamp!r}") from None
        self._publish(w + 1)
        return True

    def push_block(self, samples: npt.ArrayLike, timestamps: npt.ArrayLike) -> int:
        """Store ``samples`` ``(n, channels)`` stamped ``timestamps`` ``(n,)``; returns the accepted count."""
        # Fast path for what sources send: float32 ``(n, channels)`` and float64 ``(n,)`` arrays.
        # Exact type and dtype identity checks are much cheaper than np.asarray; anything else
        # (lists, other dtypes, subclasses, bad shapes) goes through the full checks.
        if (
            type(samples) is np.ndarray
            and type(timestamps) is np.ndarray
            and samples.dtype is _F32
            and timestamps.dtype is _F64
        ):
            shape = samples.shape
            n: int = len(samples) if samples.ndim == 2 else -1
            if n < 0 or shape[1] != self.channels or timestamps.shape != (n,):
                block, stamps, n = self._checked_block(samples, timestamps)
            else:
                block, stamps = samples, timestamps
        else:
            block, stamps, n = self._checked_block(samples, timestamps)
        w = self._write
        cap = self.capacity
        if w + n - self._next_start > cap or self._closed:
            return self._push_slow(block, stamps) if n else 0
        p = w % cap
        if p + n > cap or not n:
            self._store(w, block, stamps)
            return n
        # the common case, inlined from _store: room, no wrap
        q = p + n
        self._data[p:q] = block
        self._ts[p:q] = stamps
        end = w + n
        at = self._announce_at
        if end < at:  # no window completed: nothing more to record
            self._write = end  # publish only after the data is in place
            return n
        # inlined _publish: windows completed. Their last rows lie in this block's rows [p, q),
        # which do not wrap, so the ready times are one scalar store (one window) or one slice.
        hop = self.hop
        steps = (end - at) // hop + 1
        first = p + (at - 1 - w)
        if steps == 1:
            self._ready[first] = self._clock()
        else:
            self._ready[first:q:hop] = self._clock()
        self._write = end  # publish after the ready times too: pop reads them for windows below write
        self._announce_at = at + steps * hop
        counted = self._signal_counted
        if counted is not None:
            counted(steps)
            return n
        signal = self._signal
        if signal is not None:
            signal()
        return n

    def _checked_block(
        self, samples: npt.ArrayLike, timestamps: npt.ArrayLike
    ) -> tuple[FloatArray, npt.NDArray[np.float64], int]:
        """``samples`` and ``timestamps`` as float32 ``(n, channels)`` / float64 ``(n,)`` arrays, and n."""
        try:
            block = np.asarray(samples, dtype=np.float32)
        except (ValueError, TypeError):
            raise self._shape_error(
                f"samples of shape (n, {self.channels}) as floats", "non-numeric values"
            ) from None
        try:
            stamps = np.asarray(timestamps, dtype=np.float64)
        except (ValueError, TypeError):
            raise self._shape_error("timestamps in epoch seconds", "non-numeric values") from None
        shape = block.shape
        if len(shape) != 2 or shape[1] != self.channels:
            raise self._shape_error(f"samples of shape (n, {self.channels})", f"shape {shape}")
        n: int = shape[0]
        if stamps.shape != (n,):
            raise self._shape_error(f"timestamps of shape ({n},)", f"shape {stamps.shape}")
        return block, stamps, n

    def close(self) -> None:
        """Refuse further samples and wake a producer blocked under the ``block`` policy."""
        with self._lock:
            self._closed = True
            self._space.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def _store(self, w: int, block: FloatArray, stamps: npt.NDArray[np.float64] | list[float]) -> None:
        """Copy a block that fits into the ring at index ``w`` and publish it."""
        n = len(block)
        cap = self.capacity
        if n > cap:  # only under drop_oldest: the block's own tail overwrites its head
            skip = n - cap
            block, stamps, w, n = block[skip:], stamps[skip:], w + skip, cap
        p = w % cap
        if p + n <= cap:  # the common case: no wrap, no sub-slicing of the block
            self._data[p : p + n] = block
            self._ts[p : p + n] = stamps
        else:
            first = cap - p
            self._data[p:] = block[:first]
            self._ts[p:] = stamps[:first]
            self._data[: n - first] = block[first:]
            self._ts[: n - first] = stamps[first:]
        self._publish(w + n)

    def _push_slow(self, block: FloatArray, stamps: npt.NDArray[np.float64] | list[float]) -> int:
        n = len(block)
        if self._closed:
            return self._refuse(n)
        if self.policy == "drop_oldest":
            self._make_room_dropping_oldest(n)
            self._store(self._write, block, stamps)
            return n
        if self.policy == "drop_newest":
            room = self.capacity - (self._write - self._next_start)
            accepted = max(0, min(n, room))
            if accepted:
                self._store(self._write, block[:accepted], stamps[:accepted])
            self._refuse(n - accepted)
            return accepted
        return self._push_blocking(block, stamps)

    def _make_room_dropping_oldest(self, n: int) -> None:
        with self._lock:
            end = self._write + n
            need = end - self.capacity  # next_start must reach this so nothing needed is overwritten
            start = self._next_start
            if start >= need:
                return
            steps = -(-(need - start) // self.hop)
            start += steps * self.hop
            self._next_start = start
            if start > self._decided:
                self._lost += start - self._decided
                self._decided = start
                self._gaps.append(start)

    def _push_blocking(self, block: FloatArray, stamps: npt.NDArray[np.float64] | list[float]) -> int:
        n = len(block)
        done = 0
        deadline = None if self.block_timeout is None else self._clock() + self.block_timeout
        while done < n:
            room = self.capacity - (self._write - self._next_start)
            if room > 0:
                take = min(room, n - done)
                self._store(self._write, block[done : done + take], stamps[done : done + take])
                done += take
                continue
            with self._lock:
                # Wait for a worthwhile amount of room, not for one hop: a producer woken after
                # every pop would refill a few blocks and block again, costing the consumer a
                # wake-up (and a GIL hand-over) per batch. At most ``capacity - window_length + 1``
                # so the consumer can always free it by popping every complete window.
                self._resume_room = min(self._max_resume, max(n - done, self._min_resume))
                while (
                    not self._closed and self.capacity - (self._write - self._next_start) < self._resume_room
                ):
                    remaining = None if deadline is None else deadline - self._clock()
                    if remaining is not None and remaining <= 0:
                        break
                    self._waiting = True
                    self._space.wait(remaining)
                self._waiting = False
                if self._closed or self.capacity - (self._write - self._next_start) <= 0:
                    break
        self._refuse(n - done)
        return done

    def _refuse(self, count: int) -> int:
        if count <= 0:
            return 0
        self._refused += count
        g = self._write
        if g != self._last_gap:
            self._last_gap = g
            self._gaps.append(g)
            # the window grid restarts at the gap, so the next announcement is one window later
            self._announce_at = g + self.window_length
        return 0

    def _shape_error(self, expected: str, got: str) -> BufferInputError:
        return BufferInputError(
            f"stream {self.name!r}: expected {expected}, got {got}",
            hint=f"send {self.channels} float values per sample, in the stream's channel order",
        )

    @property
    def stats(self) -> BufferStats:
        with self._lock:
            write, start, decided = self._write, self._next_start, self._decided
            refused, lost = self._refused, self._lost
            covered, windows = self._covered, self._windows
        return BufferStats(
            pushed=write + refused,
            dropped=refused + lost,
            windows_emitted=windows,
            fill=min(self.capacity, max(0, write - start)),
            capacity=self.capacity,
            covered=covered,
            pending=write - decided,
            refused=refused,
        )

    def __repr__(self) -> str:
        return (
            f"StreamBuffer({self.name!r}, channels={self.channels}, capacity={self.capacity}, "
            f"window_length={self.window_length}, hop={self.hop}, policy={self.policy!r})"
        )
