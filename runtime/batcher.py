"""Dynamic batching of windows from many stream buffers (Triton-like semantics).

:func:`collate` is the whole batching policy as a pure function: a batch is released as soon as
``max_batch_size`` windows are pending (the oldest ones, by ``ready_at``) or when the oldest
pending window has waited ``batch_timeout`` seconds (then everything pending, up to the maximum).

:class:`Batcher` is the single consumer of a set of :class:`StreamBuffer` s. It pulls windows
round-robin across streams (never more than a batch is pending, so buffers keep their own
backpressure), applies :func:`collate`, and otherwise sleeps on a Condition that the buffers
signal when a window completes, or until the oldest pending window is due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgefleet.errors import ConfigError, ConfigIssue
from edgefleet.runtime.ringbuffer import StreamBuffer, Window
from edgefleet.types import FloatArray

__all__ = ["Batch", "Batcher", "collate"]


@dataclass(frozen=True, eq=False, slots=True)
class Batch:
    """Windows released together; ``data`` stacks their data as ``(N, window_length, channels)`` float32."""

    windows: list[Window]
    data: FloatArray

    def __len__(self) -> int:
        return len(self.windows)

    @classmethod
    def of(cls, windows: list[Window]) -> Batch:
        """Stack the windows' data; zero-copy when they are exactly one cut of one buffer, in order.

        In that case ``data`` shares memory with the windows' ``data``: treat both as read-only.
        """
        first = windows[0]
        base = first.data.base
        if (
            isinstance(base, np.ndarray)
            and base.ndim == 3
            and base.shape[0] == len(windows)
            and base.flags.c_contiguous
            and base.dtype == np.float32
        ):
            seq = first.seq
            # rows of one cut have consecutive seq numbers; n of them in order are the whole cut
            for k, w in enumerate(windows):
                if w.data.base is not base or w.seq != seq + k:
                    break
            else:
                return cls(windows=windows, data=base)
        return cls(windows=windows, data=np.stack([w.data for w in windows]))


def collate(
    pending: Sequence[Window], *, now: float, max_batch_size: int, batch_timeout: float
) -> tuple[list[Window], list[Window]]:
    """Split ``pending`` into ``(batch, still_pending)``; ``batch`` is empty when nothing is due.

    Pure: depends only on its arguments. Windows keep their relative order in both lists.
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if not pending:
        return [], []
    if len(pending) == max_batch_size:
        return list(pending), []
    if len(pending) > max_batch_size:
        ranked = sorted(range(len(pending)), key=lambda i: pending[i].ready_at)
        chosen = set(ranked[:max_batch_size])
        batch = [w for i, w in enumerate(pending) if i in chosen]
        rest = [w for i, w in enumerate(pending) if i not in chosen]
        return batch, rest
    oldest = min(w.ready_at for w in pending)
    if now - oldest >= batch_timeout:
        return list(pending), []
    return [], list(pending)


def _validate(buffers: Sequence[StreamBuffer], max_batch_size: object, batch_timeout: object) -> None:
    issues: list[ConfigIssue] = []
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
        issues.append(ConfigIssue("max_batch_size", max_batch_size, "an integer >= 1"))
    if isinstance(batch_timeout, bool) or not isinstance(batch_timeout, int | float) or batch_timeout < 0:
        issues.append(ConfigIssue("batch_timeout", batch_timeout, "seconds >= 0"))
    if not buffers:
        issues.append(ConfigIssue("buffers", [], "at least one stream buffer"))
    shapes = {(b.window_length, b.channels) for b in buffers}
    if len(shapes) > 1:
        issues.append(
            ConfigIssue(
                "buffers",
                {b.name: (b.window_length, b.channels) for b in buffers},
                "one (window_length, channels) for every stream batched together",
            )
        )
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        issues.append(ConfigIssue("buffers", names, "unique stream names"))
    if issues:
        raise ConfigError(
            "invalid batcher settings",
            issues=issues,
            hint="check the batching section and the streams' window settings",
        )


class Batcher:
    """Single-consumer batcher over several stream buffers."""

    def __init__(
        self,
        buffers: Sequence[StreamBuffer],
        *,
        max_batch_size: int,
        batch_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        buffers = list(buffers)
        _validate(buffers, max_batch_size, batch_timeout)
        self.buffers = buffers
        self.max_batch_size = max_batch_size
        self.batch_timeout = float(batch_timeout)
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: list[Window] = []
        self._next_stream = 0
        self._closed = False
        self._sleeping = False
        for buf in buffers:
            self._attach(buf)

    def _wake(self) -> None:
        # Producers call this on every completed window: skip the lock unless the consumer sleeps.
        # next_batch sets ``_sleeping`` before its last look at the buffers, so a window published
        # after that look always finds it set and the notify cannot be lost.
        if self._sleeping:
            with self._cond:
                self._cond.notify_all()

    def _attach(self, buf: StreamBuffer) -> None:
        existing = buf.notify
        if existing is None or existing == self._wake:
            buf.notify = self._wake
            return
        # keep the caller's listener and wake this batcher too
        other = existing

        def both() -> None:
            if isinstance(other, threading.Condition):
                with other:
                    other.notify_all()
            else:
                other()
            self._wake()

        buf.notify = both

    @property
    def pending(self) -> int:
        """Windows pulled from the buffers but not yet released in a batch."""
        return len(self._pending)

    def _gather(self) -> None:
        """Pull windows round-robin across streams until a full batch is pending."""
        room = self.max_batch_size - len(self._pending)
        count = len(self.buffers)
        first = self._next_stream
        self._next_stream = (first + 1) % count
        active = [(first + k) % count for k in range(count)]
        while room > 0 and active:
            quota, extra = divmod(room, len(active))
            still: list[int] = []
            for k, i in enumerate(active):
                want = quota + (1 if k < extra else 0)
                if want == 0:
                    still.append(i)
                    continue
                windows = self.buffers[i].pop_windows(want)
                self._pending.extend(windows)
                room -= len(windows)
                if len(windows) == want:  # may have more
                    still.append(i)
            # terminates: either every stream asked filled its share (room reaches 0)
            # or one came up short and leaves the rotation
            active = still

    def next_batch(self, timeout: float | None = None) -> Batch | None:
        """Wait for the next due batch; None on ``timeout`` seconds or after :meth:`close`."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            try:
                while True:
                    if self._closed:
                        return None
                    self._sleeping = True  # before gathering: see _wake
                    self._gather()
                    now = self._clock()
                    batch, self._pending = collate(
                        self._pending,
                        now=now,
                        max_batch_size=self.max_batch_size,
                        batch_timeout=self.batch_timeout,
                    )
                    if batch:
                        break
                    if deadline is not None and now >= deadline:
                        return None
                    wake = deadline
                    if self._pending:
                        due = min(w.ready_at for w in self._pending) + self.batch_timeout
                        wake = due if wake is None else min(wake, due)
                    self._cond.wait(None if wake is None else max(0.0, wake - now))
            finally:
                self._sleeping = False
        return Batch.of(batch)

    def close(self) -> None:
        """Make :meth:`next_batch` return None now and from then on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def drain(self) -> list[Batch]:
        """Everything still pending or complete in the buffers, as batches of at most ``max_batch_size``."""
        with self._cond:
            windows = list(self._pending)
            self._pending = []
            for buf in self.buffers:
                while True:
                    got = buf.pop_windows(1024)
                    if not got:
                        break
                    windows.extend(got)
        windows.sort(key=lambda w: w.ready_at)
        size = self.max_batch_size
        return [Batch.of(windows[i : i + size]) for i in range(0, len(windows), size)]
