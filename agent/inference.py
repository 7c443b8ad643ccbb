"""From an inferred batch to results: the inference worker's per-batch step.

:meth:`BatchRunner.run` runs one batch on a model and hands its results to the writer, one of
three ways that all make the same rows (:func:`~edgefleet.agent.results.result_rows_of`):

* the common case, no router: the answers, the observers (e.g. drift) and the rows are run in
  the writer thread (``ResultWriter.put_deferred``) while this thread goes back to the model;
* with a fallback router: the answers are interpreted here (the router needs them), the
  observers see them, and the router is offered the records derived from the rows
  (:func:`~edgefleet.agent.results.result_records_of`).

A batch that fails is counted, logged and recorded as an event (one per minute per kind of
failure, with a count), never raised: a bad batch must not stop the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from edgefleet.agent.batch_predictions import BatchPredictions
from edgefleet.agent.fallback_offload import OffloadSplit, offer_with_given_back
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.results import result_records_of, result_rows_of
from edgefleet.agent.routing import FallbackRouter
from edgefleet.agent.sources.base import RateLimitedLog
from edgefleet.agent.writer import ResultWriter
from edgefleet.errors import EdgefleetError
from edgefleet.runtime import Model
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Bundle, Prediction
from edgefleet.runtime.encoding import InputEncoder
from edgefleet.types import FloatArray

__all__ = ["BatchObserver", "BatchRunner", "ShadowTap"]

log = logging.getLogger(__name__)

BatchObserver = Callable[[Batch, Sequence[Prediction]], None]
"""Sees every inferred batch and its predictions (e.g. the drift monitor): in the writer thread,
or in the inference worker when a fallback router is set. Must be quick; exceptions are logged
and ignored."""

ShadowTap = Callable[[Bundle, Batch, Any, float], None]
"""OTA shadow mode (:meth:`edgefleet.agent.ota_shadow.ShadowRun.tap`): sees each inferred batch,
its outputs and latency (ms) in the inference worker; must be quick and never raise."""

_FAILURE_EVENT_EVERY_S = 60.0


class BatchRunner:
    """Runs batches on a model and hands their results to the writer (see the module doc)."""

    def __init__(
        self,
        *,
        writer: ResultWriter,
        counters: PipelineCounters,
        add_event: Callable[..., None],
        keep_outputs: bool = False,
        router: FallbackRouter | None = None,
        observers: Sequence[BatchObserver] = (),
    ) -> None:
        self._writer = writer
        self.counters = counters
        self._add_event = add_event
        self.keep_outputs = keep_outputs
        self._router = router
        # A router that offloads (CloudRouter with [fallback] offload_capacity) sees each batch
        # before the model call: edgefleet.agent.fallback_offload.
        self._offload: Callable[[Batch | None], OffloadSplit] | None = getattr(router, "offload", None)
        self._observers = list(observers)
        self._observer_log = RateLimitedLog(log, 60.0)
        self._last_failure: tuple[str, float, int] = ("", 0.0, 0)
        self.shadow: ShadowTap | None = None

    def run(
        self,
        bundle: Bundle,
        model: Model,
        batch: Batch,
        preprocess: Callable[[FloatArray], FloatArray] | None,
        encoder: InputEncoder | None = None,
    ) -> None:
        """Infer ``batch`` (from the codes ``encoder`` made, else ``preprocess``-ed floats) and
        hand its results on; a failure is reported through :meth:`failed`."""
        flags: list[str | None] | None = None
        if self._offload is not None:  # windows over capacity go to the cloud instead
            split = self._offload(batch)
            if split.batch is None:
                return
            batch, flags = split.batch, split.flags
        started = time.monotonic()
        try:
            codes = None if encoder is None else batch.codes
            if codes is not None and encoder is not None:
                outputs = model.predict_encoded(codes, encoder)
            else:
                outputs = model.predict(batch.data if preprocess is None else preprocess(batch.data))
            bundle.check_outputs(outputs, len(batch))
        except EdgefleetError as exc:
            self.failed(batch, exc)
            return
        except Exception as exc:
            log.exception("inference failed unexpectedly")
            self.failed(batch, exc)
            return
        done = time.monotonic()
        self.counters.record_batch(len(batch), (done - started) * 1000.0)
        shadow = self.shadow
        if shadow is not None:  # a candidate model in OTA shadow mode (it infers in its own thread)
            shadow(bundle, batch, outputs, (done - started) * 1000.0)
        keep_outputs = self.keep_outputs
        if self._router is None:
            # The common case: this thread goes straight back to the model; the writer thread
            # turns the outputs into answers and rows (and runs the observers, e.g. drift) while
            # the next batch is inferred.
            # stamped now: the writer builds the rows when it commits, up to its interval later
            created_at = time.time()

            def deferred_rows() -> list[tuple[Any, ...]]:
                answers = bundle.interpret_batch(outputs)
                if self._observers:
                    self._notify_observers(batch, BatchPredictions(answers))
                return result_rows_of(
                    bundle, batch, answers, done, keep_outputs=keep_outputs, created_at=created_at
                )

            self._writer.put_deferred(deferred_rows, lambda exc: self.failed(batch, exc), len(batch))
            return
        try:
            answers = bundle.interpret_batch(outputs)
        except EdgefleetError as exc:  # check_outputs vouched for the shapes; report, never crash
            self.failed(batch, exc)
            return
        predictions = answers.predictions()
        self._notify_observers(batch, predictions)
        rows = result_rows_of(bundle, batch, answers, done, keep_outputs=keep_outputs)
        records = result_records_of(rows)
        keep = offer_with_given_back(self._router, batch.windows, predictions, records, flags, self.counters)
        if keep:
            self._writer.put(keep)

    def given_back(self) -> Batch | None:
        """The windows the cloud gave back while no batch came (inferred late); None if none."""
        return None if self._offload is None else self._offload(None).batch

    def _notify_observers(self, batch: Batch, predictions: Sequence[Prediction]) -> None:
        for observer in self._observers:
            try:
                observer(batch, predictions)
            except Exception as exc:  # an observer (drift, ...) must never stop inference
                self._observer_log.warning("batch observer %r failed: %s", observer, exc)

    def failed(self, batch: Batch, exc: BaseException) -> None:
        """Count ``batch`` as skipped because of ``exc``; log and record it (rate-limited)."""
        self.counters.record_inference_error(len(batch))
        streams = sorted(set(batch.streams))
        # Keyed by the error's class: its text often varies with the batch size.
        kind = type(exc).__name__
        now = time.monotonic()
        last_kind, last_at, suppressed = self._last_failure
        if kind == last_kind and now - last_at < _FAILURE_EVENT_EVERY_S:
            # The same failure on every batch: one event per minute, with a count, not a flood.
            self._last_failure = (last_kind, last_at, suppressed + len(batch))
            return
        self._last_failure = (kind, now, 0)
        log.error("inference failed for %d windows of %s: %s", len(batch), ", ".join(streams), exc)
        self._add_event(
            "inference_failed",
            f"{len(batch)} windows skipped: {exc}",
            level="error",
            data={"streams": streams, "skipped_since_last_event": suppressed},
        )
