"""What the fallback policies need to know about the device, read from the parts that know it.

:class:`PipelineSignals` gathers one :class:`~edgefleet.agent.fallback_policy.Signals` per batch
from the pipeline (model slot, ring buffers), the pipeline counters (inference latency) and the
drift observer (active alerts). The reads are cheap except the latency p95 (a sort of the recent
batch latencies), which is recomputed at most every ``latency_refresh_s``; the reference ranges
are recomputed only when the model slot holds another bundle.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edgefleet.agent.drift_observer import DriftObserver
from edgefleet.agent.fallback_policy import ChannelRanges, Signals
from edgefleet.agent.metrics import PipelineCounters, percentile
from edgefleet.agent.pipeline import Pipeline
from edgefleet.runtime.bundle import Bundle

__all__ = ["PipelineSignals"]


class PipelineSignals:
    """A :data:`~edgefleet.agent.fallback_policy.SignalSource` over a running pipeline; call it
    from the inference thread."""

    def __init__(
        self,
        pipeline: Pipeline,
        counters: PipelineCounters,
        drift: DriftObserver | None,
        *,
        range_tolerance: float | None,
        latency_refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipeline = pipeline
        self._counters = counters
        self._drift = drift
        self._tolerance = range_tolerance
        self._refresh_s = latency_refresh_s
        self._clock = clock
        self._p95: float | None = None
        self._p95_at = float("-inf")
        self._ranges_of: Bundle | None = None
        self._ranges: ChannelRanges | None = None

    def __call__(self) -> Signals:
        current = self._pipeline.model_slot.current
        fill: dict[str, float] = {}
        for name, buffer in self._pipeline.buffers().items():
            stats = buffer.stats
            fill[name] = stats.fill / stats.capacity if stats.capacity else 0.0
        return Signals(
            model_active=current is not None,
            drifted_channels=frozenset() if self._drift is None else self._drift.drifted_channels(),
            ranges=None if current is None else self._ranges_for(current.bundle),
            fill=fill,
            latency_p95_ms=self._latency_p95(),
            model_name=None if current is None else current.name,
        )

    def _ranges_for(self, bundle: Bundle) -> ChannelRanges | None:
        if self._tolerance is None:
            return None
        if bundle is not self._ranges_of:
            reference = bundle.manifest.reference
            self._ranges_of = bundle
            ranges = None if reference is None else ChannelRanges.from_profile(reference, self._tolerance)
            self._ranges = ranges
        return self._ranges

    def _latency_p95(self) -> float | None:
        now = self._clock()
        if now - self._p95_at >= self._refresh_s:
            self._p95 = percentile(self._counters.snapshot().latencies_ms, 95)
            self._p95_at = now
        return self._p95
