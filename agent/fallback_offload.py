"""Capacity offload: windows the device cannot keep up with go to the cloud *instead of* the edge.

The capacity reasons of :class:`~edgefleet.agent.fallback_policy.CapacityPolicy` (``queue_high``:
the stream's ring buffer over its high-water mark; ``latency_slo``: the edge inference p95 over its
objective) are judged here **before** the model call, so the windows they claim are never inferred
on the device unless the cloud fails them. The router (:class:`~edgefleet.agent.cloud_router.CloudRouter`)
sends them like any claimed window, without an edge answer to fall back on; when the cloud does not
answer in time (``timeout``, ``offline``, ``budget``, ``cloud_error``, ``shutdown``) the window is
**given back**: queued here and inferred by the edge with the next batches, ``late_per_batch`` at a
time (or on their own when the batcher is idle, or while the pipeline drains), its result flagged
``<reason>:<outcome>`` (e.g. ``queue_high:timeout``). The same give-back serves ``no_model``:
windows sent while no model is active that the cloud does not answer wait here for the model.
Each window is thus stored exactly once, by the cloud or late by the edge; only past
``max_given_back`` queued windows are the oldest dropped (counted in ``given_back_dropped``), so
memory stays bounded through a long outage.

``latency_slo`` would otherwise feed itself: with every window offloaded the edge infers nothing,
and the p95 of its recent batches never comes down. So one batch per ``probe_every_s`` is left to
the edge while the objective is missed (from ``probe_every_s`` after it started being missed), which
keeps the p95 current.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from edgefleet.agent.fallback_policy import CapacityPolicy, Signals
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.routing import FallbackRouter, offer
from edgefleet.agent.store import ResultRecord
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Prediction
from edgefleet.runtime.ringbuffer import Window

__all__ = ["CapacityOffload", "OffloadSplit", "offer_with_given_back"]

OFFLOAD_REASONS = frozenset({"queue_high", "latency_slo"})


@dataclass(frozen=True)
class OffloadSplit:
    """What the edge must infer now: ``batch`` (None: nothing) and, per window of it, the flag of
    a window the cloud gave back (``<reason>:<outcome>``) or None for a fresh window; ``flags``
    None when no window was given back."""

    batch: Batch | None
    flags: list[str | None] | None = None


class CapacityOffload:
    """Which windows of a batch to send instead of inferring, and the windows given back."""

    def __init__(
        self,
        capacity: CapacityPolicy,
        *,
        max_given_back: int = 4096,
        late_per_batch: int = 32,
        probe_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.active = capacity.queue_high_water is not None or capacity.latency_p95_ms is not None
        """Whether any capacity test is on (else only the given-back windows pass through here)."""
        self.max_given_back = max_given_back
        self.late_per_batch = late_per_batch
        """Given-back windows joining one batch at most, so a backlog never makes one huge model call."""
        self.probe_every_s = probe_every_s
        self._clock = clock
        self._next_probe: float | None = None
        self._lock = threading.Lock()
        self._given_back: deque[tuple[Window, str]] = deque()
        self.offloaded = 0
        self.given_back = 0
        self.given_back_dropped = 0
        self._idle: OffloadSplit | None = None

    def reasons(self, windows: Sequence[Window], signals: Signals, room: int) -> list[str | None]:
        """Per window, the capacity reason to send it instead of inferring it (at most ``room``)."""
        reasons = [
            r if r in OFFLOAD_REASONS else None
            for r in self.capacity.flags([w.stream for w in windows], signals)
        ]
        if "latency_slo" not in reasons:
            self._next_probe = None
        else:
            now = self._clock()
            if self._next_probe is None:  # the objective is missed from now on
                self._next_probe = now + self.probe_every_s
            elif now >= self._next_probe:  # this batch measures the edge again (module doc)
                self._next_probe = now + self.probe_every_s
                reasons = [None if r == "latency_slo" else r for r in reasons]
        for i, reason in enumerate(reasons):
            if reason is not None:
                if room <= 0:
                    reasons[i] = None  # the cloud is saturated: the edge infers it
                else:
                    room -= 1
        return reasons

    def give_back(self, window: Window, flag: str) -> None:
        """Queue ``window`` for the edge, its result to be flagged ``flag``; any thread."""
        with self._lock:
            self._given_back.append((window, flag))
            self.given_back += 1
            while len(self._given_back) > self.max_given_back:
                self._given_back.popleft()
                self.given_back_dropped += 1

    def pending_given_back(self) -> int:
        with self._lock:
            return len(self._given_back)

    def idle(self) -> OffloadSplit:
        """Every window given back, as a batch of its own (the batcher had none): the next
        :meth:`resume` of that batch returns it with its flags. Inference thread only."""
        self._idle = self.merge(None, None)
        return self._idle

    def resume(self, batch: Batch) -> OffloadSplit | None:
        """The split :meth:`idle` made of ``batch``; None for any other batch."""
        idle, self._idle = self._idle, None
        return idle if idle is not None and idle.batch is batch else None

    def merge(self, keep: list[Window] | None, whole: Batch | None) -> OffloadSplit:
        """The batch of the windows of ``whole`` to ``keep`` (None: all of it, as it is) plus every
        window given back."""
        with self._lock:
            count = min(len(self._given_back), self.late_per_batch)
            late = [self._given_back.popleft() for _ in range(count)]
        if not late:
            if keep is None:
                return OffloadSplit(whole)
            return OffloadSplit(Batch.of(keep) if keep else None)
        windows = keep if keep is not None else ([] if whole is None else list(whole.windows))
        flags: list[str | None] = [None] * len(windows) + [flag for _, flag in late]
        return OffloadSplit(Batch.of(windows + [w for w, _ in late]), flags)


def offer_with_given_back(
    router: FallbackRouter,
    windows: Sequence[Window],
    predictions: Sequence[Prediction],
    records: Sequence[ResultRecord],
    flags: Sequence[str | None] | None,
    counters: PipelineCounters,
) -> list[ResultRecord]:
    """:func:`~edgefleet.agent.routing.offer` for the fresh windows; the given-back ones are kept
    with their flag (they have been to the cloud already: never offered twice)."""
    if flags is None:
        return offer(router, windows, predictions, records, counters)
    fresh = [i for i, f in enumerate(flags) if f is None]
    keep = offer(
        router,
        [windows[i] for i in fresh],
        [predictions[i] for i in fresh],
        [records[i] for i in fresh],
        counters,
    )
    keep.extend(replace(records[i], fallback_reason=f) for i, f in enumerate(flags) if f is not None)
    return keep
