"""Dynamic batching of windows from many stream buffers (Triton-like semantics).

:func:`collate` is the whole batching policy as a pure function: a batch is released as soon as
``max_batch_size`` windows are pending (the oldest ones, by ``ready_at``) or when the oldest
pending window has waited ``batch_timeout`` seconds (then everything pending, up to the maximum).

:class:`Batcher` is the single consumer of a set of :class:`StreamBuffer` s. It pulls windows
round-robin across streams (never more than a batch is pending, so buffers keep their own
backpressure), applies :func:`collate`, and otherwise sleeps until the buffers ring it (a window
completed that the batch waits for), or until the oldest pending window is due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

from edgefleet.errors import ConfigError, ConfigIssue
from edgefleet.runtime.batch import Batch
from edgefleet.runtime.ring_group import GroupPop, RingGroup
from edgefleet.runtime.ringbuffer import StreamBuffer, counts_windows
from edgefleet.runtime.windows import Window, WindowBatch

__all__ = ["Batch", "Batcher", "collate"]


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
        group: RingGroup | None = None,
    ) -> None:
        buffers = list(buffers)
        _validate(buffers, max_batch_size, batch_timeout)
        if group is not None and {id(b) for b in group.buffers} != {id(b) for b in buffers}:
            raise ValueError("a batcher's ring group must hold exactly the batcher's buffers")
        # buffers sharing one array: one pop for all of them when each has whole windows
        self._group = group
        # the group pop the pending parts are, when they are exactly one (its data is the batch's)
        self._group_pop: GroupPop | None = None
        self.buffers = buffers
        self.max_batch_size = max_batch_size
        self.batch_timeout = float(batch_timeout)
        self._clock = clock
        # State is guarded by _lock; the consumer sleeps on _bell, a lock used as a doorbell that
        # producers ring (release) and the consumer answers (acquire). A Condition would do, but
        # its notify and wait are Python code: on a core woken from idle for each tick, the notify
        # alone cost a producer about 35 us more than releasing a lock (docs/batching.md).
        self._lock = threading.Lock()
        self._bell = threading.Lock()
        self._bell.acquire()  # not rung
        self._rung = False  # set by a ring, cleared when the consumer answers it
        # pulled from the buffers, not yet released: one WindowBatch per pop, never more than a batch
        self._parts: list[WindowBatch] = []
        self._count = 0
        self._next_stream = 0
        self._closed = False
        self._sleeping = False
        # windows published since the consumer's last look, and how many it sleeps until (see _wake)
        self._arrived = 0
        self._need = 1
        # > 0 while a producer hands over a round of pushes (see hold_wakeups)
        self._holds = 0
        # the consumer's fast path in next_batch (one stream): pop without the lock
        self._single: StreamBuffer | None = buffers[0] if len(buffers) == 1 else None
        for buf in buffers:
            self._attach(buf)

    @counts_windows
    def _wake(self, windows: int = 1) -> None:
        # Producers call this on every push that completes windows: skip the lock unless the
        # consumer sleeps, and wake it only once the windows it waits for are there (the first
        # one, to start the batch timeout; then enough to fill the batch), not at every window:
        # with many streams a wake-up per window costs more than the batching saves.
        # next_batch sets ``_sleeping`` (and ``_need`` to 1) before its last look at the buffers,
        # so a window published after that look is always counted and the notify cannot be lost.
        if self._sleeping:
            arrived = self._arrived + windows
            self._arrived = arrived
            if arrived >= self._need and not self._holds:
                self._ring()

    def hold_wakeups(self) -> None:
        """Count the windows pushed from now on without waking the consumer, until
        :meth:`release_wakeups`: a producer about to push into many streams at once (the sources'
        I/O thread, one pacing tick) wakes it once for all of them, not at the first stream's window
        and again at the batch's last. Calls nest; every hold must be released."""
        self._holds += 1

    def release_wakeups(self) -> None:
        """End a :meth:`hold_wakeups`; wakes the consumer if the windows it waits for arrived."""
        self._holds -= 1
        if not self._holds and self._sleeping and self._arrived >= self._need:
            self._ring()

    def _ring(self) -> None:
        """Wake the consumer: now if it sleeps, else its next sleep ends at once (it looks again)."""
        if self._rung:  # rung and not yet answered: a producer pushing fast rings once, not per push
            return
        self._rung = True
        # not contextlib.suppress: on every tick, its three Python calls cost more than the ring
        try:  # noqa: SIM105
            self._bell.release()
        except RuntimeError:  # another producer rang in between: one ring is enough
            pass

    def _attach(self, buf: StreamBuffer) -> None:
        existing = buf.notify
        if existing is None or existing == self._wake:
            buf.notify = self._wake
            return
        # keep the caller's listener and wake this batcher too
        other = existing

        @counts_windows
        def both(windows: int = 1) -> None:
            if isinstance(other, threading.Condition):
                with other:
                    other.notify_all()
            elif getattr(other, "counts_windows", False):
                cast(Callable[[int], object], other)(windows)
            else:
                cast(Callable[[], object], other)()
            self._wake(windows)

        buf.notify = both

    @property
    def pending(self) -> int:
        """Windows pulled from the buffers but not yet released in a batch."""
        return self._count

    def _gather(self) -> None:
        """Pull windows round-robin across streams until a full batch is pending."""
        room = self.max_batch_size - self._count
        buffers = self.buffers
        count = len(buffers)
        if count == 1:  # the common single-stream case: one pop, no rotation bookkeeping
            if room > 0:
                part = buffers[0].pop_batch(room)
                if part is not None:
                    self._parts.append(part)
                    self._count += len(part)
            return
        group = self._group
        if group is not None and room >= count:
            # every stream's oldest windows in one gather; None sends us stream by stream
            popped = group.pop(room // count)
            if popped is not None:
                if self._parts or self._group_pop is not None:
                    self._spill()
                    self._parts.extend(popped.parts)
                else:
                    self._group_pop = popped  # all that is pending: its parts are built if needed
                got = len(popped.data)
                self._count += got
                room -= got
                if room <= 0:
                    return
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
                buf = buffers[i]
                if buf._write - buf._next_start < buf.window_length:
                    # Not a whole window since the last pop: skip the call and its lock. A stale
                    # read only misses a window published after this look, which _wake counts
                    # (_sleeping is set before the gather), as if it had come a moment later.
                    continue
                part = buf.pop_batch(want)
                got = 0 if part is None else len(part)
                if part is not None:
                    if self._group_pop is not None:
                        self._spill()
                    self._parts.append(part)
                    self._count += got
                room -= got
                if got == want:  # may have more
                    still.append(i)
            # terminates: either every stream asked filled its share (room reaches 0)
            # or one came up short and leaves the rotation
            active = still

    def _spill(self) -> None:
        """More windows join a pending group pop: from now on it is pending as its parts."""
        popped, self._group_pop = self._group_pop, None
        if popped is not None:
            self._parts[:0] = popped.parts

    def _oldest_ready_at(self) -> float:
        if self._group_pop is not None:
            return self._group_pop.oldest_ready_at
        # a part's windows are in stream order and arrival times only grow: its first is its oldest
        return min(p.oldest_ready_at for p in self._parts)

    def next_batch(self, timeout: float | None = None) -> Batch | None:
        """Wait for the next due batch; None on ``timeout`` seconds or after :meth:`close`.

        The policy is :func:`collate`'s: since at most ``max_batch_size`` windows are ever pending,
        a batch is either all of them (when there are ``max_batch_size``, or the oldest has waited
        ``batch_timeout``) or nothing. Windows are handled as :class:`WindowBatch` parts, so the
        work per batch does not grow with its size; ``Batch.windows`` is built on demand.
        """
        single = self._single
        if single is not None and not self._count and not self._closed:
            # One stream, nothing pending: a full pop is the whole batch (collate releases it at
            # once), so skip the lock and the clock. Anything less joins the pending parts.
            part = single.pop_batch(self.max_batch_size)
            if part is not None:
                if len(part) == self.max_batch_size:
                    return Batch.of_part(part)
                with self._lock:
                    self._parts.append(part)
                    self._count += len(part)
        deadline = None if timeout is None else self._clock() + timeout
        with self._lock:
            try:
                while True:
                    if self._closed:
                        return None
                    # before gathering (see _wake): from here every window published counts, and
                    # the first one wakes, until _need says how many the batch still lacks
                    self._need = 1
                    self._arrived = 0
                    self._sleeping = True
                    self._gather()
                    now = self._clock()
                    if self._count:
                        if self._count >= self.max_batch_size:
                            break
                        oldest = self._oldest_ready_at()
                        if now - oldest >= self.batch_timeout:
                            break
                        due: float | None = oldest + self.batch_timeout
                    else:
                        due = None
                    if deadline is not None and now >= deadline:
                        return None
                    wake = deadline
                    if due is not None:
                        wake = due if wake is None else min(wake, due)
                    # nothing pending: the first window starts the timeout; else a full batch
                    need = self.max_batch_size - self._count if self._count else 1
                    self._need = need
                    if self._arrived >= need:
                        continue  # enough arrived while gathering: look again now
                    self._sleep(None if wake is None else max(0.0, wake - now))
            finally:
                self._sleeping = False
            parts = self._parts
            popped, self._group_pop = self._group_pop, None
            self._parts = []
            self._count = 0
        if popped is not None:  # the whole batch is one group pop (nothing else joined it)
            return Batch.of_group(popped)
        return Batch.of_parts(parts)

    def _sleep(self, timeout: float | None) -> None:
        """Until rung or ``timeout`` seconds (None: until rung), without ``_lock`` (held on return).

        A ring from before this sleep (answered by a look that found the windows anyway) ends it at
        once: the caller looks again and sleeps again, one extra look, never a missed window.
        """
        self._lock.release()
        try:
            if self._bell.acquire(timeout=-1 if timeout is None else timeout):
                self._rung = False  # answered: the next window rings again (the look comes after)
        finally:
            self._lock.acquire()

    def close(self) -> None:
        """Make :meth:`next_batch` return None now and from then on."""
        with self._lock:
            self._closed = True
        self._ring()

    @property
    def closed(self) -> bool:
        return self._closed

    def drain(self) -> list[Batch]:
        """Everything still pending or complete in the buffers, as batches of at most ``max_batch_size``."""
        with self._lock:
            self._spill()
            windows = [w for part in self._parts for w in part.windows]
            self._parts = []
            self._group_pop = None
            self._count = 0
            for buf in self.buffers:
                while True:
                    got = buf.pop_windows(1024)
                    if not got:
                        break
                    windows.extend(got)
        windows.sort(key=lambda w: w.ready_at)
        size = self.max_batch_size
        return [Batch.of(windows[i : i + size]) for i in range(0, len(windows), size)]
