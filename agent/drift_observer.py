"""The agent's side of drift: a pipeline batch observer around :class:`DriftMonitor`.

The service builds one :class:`DriftObserver` per pipeline when ``[drift] enabled``, attaches it
to each bundle the pipeline loads (:meth:`attach`: a bundle without a reference profile turns
drift off with one log line and one event) and passes it to the pipeline as an observer. Each
closed report is queued as a ``drift`` message (version 2 body, raw bin counts included) in the
store's outbox; each alert change becomes a ``drift.alert`` / ``drift.cleared`` event naming the
channel, metric and score. ``agent status`` shows :meth:`status`.

CPU budget (``[drift] max_cpu``): the observer runs in the pipeline's writer thread and charges
the thread CPU time it spends to a token bucket that fills at ``max_cpu`` seconds per second (of
wall time). While the bucket is empty whole batches are skipped (noted in the report as
``skipped_windows``), so at saturation drift never takes more than that share of a core; at
sensor rates nothing is ever skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.batch_predictions import BatchPredictions
from edgefleet.agent.config import DriftConfig
from edgefleet.agent.drift_monitor import DriftMonitor, DriftReport, DriftSettings
from edgefleet.agent.sources.base import RateLimitedLog
from edgefleet.agent.store import PRIORITY_TELEMETRY, Store
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Bundle, Prediction
from edgefleet.runtime.windows import WindowBatch

__all__ = ["DriftObserver"]

log = logging.getLogger(__name__)

_BURST_S = 0.05  # CPU seconds drift may spend at once before the budget applies


def _streams_and_starts(
    parts: Sequence[WindowBatch], windows: int
) -> tuple[list[str], npt.NDArray[np.int64]] | None:
    """Each window's stream and start index, from the parts' segments in one pass; None when the
    batch has no parts. ``Batch.start_index`` builds an ``arange`` per part: with 16 sensors
    adding a window each that was most of what drift cost per batch."""
    if not parts:
        return None
    streams: list[str] = []
    starts: list[int] = []
    for part in parts:
        name, hop = part.stream, part.hop
        for first, count, _ in part.segments:
            streams.extend([name] * count)
            starts.extend(range(first, first + count * hop, hop))
    if len(starts) != windows:
        return None  # parts that do not describe the batch window by window: the slow way
    return streams, np.array(starts, dtype=np.int64)


class DriftObserver:
    """Pipeline observer feeding a :class:`DriftMonitor`; thread-safe for :meth:`status`."""

    def __init__(
        self,
        config: DriftConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.config = config
        self.settings = DriftSettings.from_config(config)
        self.store = store
        self._lock = threading.Lock()
        self._monitor: DriftMonitor | None = None
        self._model: tuple[str | None, str | None] = (None, None)
        self._off_reason: str | None = "no bundle loaded yet"
        self._failures = RateLimitedLog(log, 60.0)
        self._budget_per_s = config.max_cpu
        self._tokens = _BURST_S  # full: the first counts and report are not charged to a cold bucket
        self._clock, self._cpu_clock = clock, cpu_clock  # wall time for the refill; CPU time charged
        self._refilled_at = clock()
        self._resume_at = 0.0  # while the bucket is empty: when it holds a token again
        # Windows skipped by the budget, written by the writer thread alone (so no lock on the
        # skip path, which at saturation runs for most batches); the monitor is told of them
        # under the lock before it counts, closes or reports its state.
        self.skipped_windows = 0
        self._skips_noted = 0

    def attach(self, bundle: Bundle) -> None:
        """Start counting against ``bundle``'s reference profile (or turn drift off without one)."""
        manifest = bundle.manifest
        with self._lock:
            self._model = (manifest.name, str(manifest.version))
            if manifest.reference is None:
                self._monitor = None
                self._off_reason = f"bundle {manifest.name} {manifest.version} has no reference profile"
                log.warning("drift monitoring off: %s (rebuild it with --reference-data)", self._off_reason)
                self._event("drift_off", f"drift monitoring off: {self._off_reason}", level="warning")
                return
            labels = manifest.labels if manifest.task == "classification" else []
            self._monitor = DriftMonitor(
                manifest.reference,
                window_length=manifest.preprocessing.window_length,
                labels=labels,
                settings=self.settings,
                on_report=self._publish,
            )
            self._skips_noted = self.skipped_windows  # those skipped before belong to no report of it
            self._off_reason = None

    def __call__(self, batch: Batch, predictions: Sequence[Prediction]) -> None:
        monitor = self._monitor
        windows = len(batch)
        if monitor is None or windows == 0:
            return
        if monitor.sample_every > 1 and monitor.pass_over(windows):
            return  # left out by sampling: first, so that it costs next to nothing
        started = self._clock()
        if started < self._resume_at:
            # The budget is spent: at saturation most batches end here, so this path is a
            # compare and an add (measured: with nearly every batch skipped, the lock and calls
            # it took before cost the agent about 1.5 % of its results per CPU-second).
            self.skipped_windows += windows
            return
        budget = self._budget_per_s
        tokens = min(_BURST_S, self._tokens + (started - self._refilled_at) * budget)
        self._refilled_at = started
        cpu = self._cpu_clock()
        with self._lock:
            self._note_skips(monitor)
            self._count(monitor, batch, predictions)
        # Charged in this thread's CPU time, not wall time: on a loaded machine the wall time
        # includes waiting for a core, which would make the share drift gets depend on the
        # neighbours' load rather than on what drift itself costs.
        tokens -= self._cpu_clock() - cpu
        self._tokens = tokens
        if tokens < 0:
            self._resume_at = started + -tokens / budget

    def _note_skips(self, monitor: DriftMonitor) -> None:
        """Tell the monitor of the windows skipped since it was last told (hold the lock)."""
        skipped = self.skipped_windows
        if skipped != self._skips_noted:
            monitor.skip(skipped - self._skips_noted)
            self._skips_noted = skipped

    def _count(self, monitor: DriftMonitor, batch: Batch, predictions: Sequence[Prediction]) -> None:
        """Hand ``batch`` to ``monitor`` in the form it counts cheapest (hold the lock)."""
        labels: Sequence[str | None] | None = None
        scores: Sequence[float | None] | None = None
        if monitor.labels:
            if isinstance(predictions, BatchPredictions):  # the columns, no object per window
                labels, scores = predictions.answers.labels, predictions.answers.scores
            else:
                labels, scores = [p.label for p in predictions], [p.score for p in predictions]
        group = batch.group
        if group is not None:
            # a ring group pop (many sensors of one shape): its windows as it describes them
            monitor.add_group(
                group.streams,
                group.starts,
                group.count,
                group.hop,
                batch.data,
                start_ts=group.start_ts,
                end_ts=group.end_ts,
                labels=labels,
                scores=scores,
            )
            return
        parts = batch.parts
        if len(parts) == 1:
            # one stream (saturation, one fast sensor): its windows as they are, zero-copy
            part = parts[0]
            monitor.add_windows(
                part.stream,
                part.start_index,
                part.data,
                start_ts=part.start_ts,
                end_ts=part.end_ts,
                labels=labels,
                scores=scores,
            )
            return
        # Several streams: one call for the whole batch (each stream's windows stay oldest first).
        order = None
        meta = _streams_and_starts(parts, len(batch))
        if meta is not None:
            streams, starts = meta
        else:
            starts = np.asarray(batch.start_index, dtype=np.int64)
            order = None if parts else np.argsort(starts, kind="stable")
            streams = batch.streams
        data, t0, t1 = batch.data, batch.start_ts, batch.end_ts
        if order is not None:
            streams = [streams[i] for i in order]
            starts, data, t0, t1 = starts[order], data[order], t0[order], t1[order]
            labels = None if labels is None else [labels[i] for i in order]
            scores = None if scores is None else [scores[i] for i in order]
        monitor.add_windows(streams, starts, data, start_ts=t0, end_ts=t1, labels=labels, scores=scores)

    def flush(self) -> None:
        """Close and send the open report, if it counted anything (the agent stops or reloads,
        after the pipeline has stopped: so the skips can be told to the monitor here)."""
        with self._lock:
            if self._monitor is not None:
                self._note_skips(self._monitor)
                self._monitor.flush()

    def _publish(self, report: DriftReport) -> None:
        name, version = self._model
        try:
            self.store.enqueue(
                "drift",
                report.body(model_name=name, model_version=version, stream=None),
                priority=PRIORITY_TELEMETRY,
            )
        except Exception as exc:  # a full or failing store must never stop inference
            self._failures.warning("drift report %d not stored: %s", report.index, exc)
        for alert in report.alerts:
            what = "drifted" if alert.kind == "alert" else "back within the reference"
            score = f"{alert.metric} {alert.score:.3f}"
            message = f"input channel {alert.channel} {what}: {score} (report {alert.report})"
            if alert.kind == "alert":
                log.warning("%s", message)
            else:
                log.info("%s", message)
            self._event(
                f"drift.{alert.kind}",
                message,
                level="warning" if alert.kind == "alert" else "info",
                data=alert.to_dict(),
            )

    def _event(self, kind: str, message: str, *, level: str, data: dict[str, Any] | None = None) -> None:
        try:
            self.store.add_event(kind, message, level=level, data=data)
        except Exception as exc:
            self._failures.warning("could not record %s event: %s", kind, exc)

    def drifted_channels(self) -> frozenset[str]:
        """The input channels with an active drift alert (none while drift is off)."""
        with self._lock:
            return frozenset() if self._monitor is None else self._monitor.drifted_channels()

    def status(self) -> dict[str, Any]:
        with self._lock:
            monitor = self._monitor
            if monitor is None:
                return {"enabled": False, "reason": self._off_reason}
            # No _note_skips here: this runs on another thread than the pipeline's, whose
            # sampling path adds to the monitor's skipped count without the lock.
            return {"enabled": True, "skipped_windows": self.skipped_windows, **monitor.state()}
