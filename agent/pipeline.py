"""The agent's data path: sources -> ring buffers -> batcher -> inference -> store.

Threads (all daemon threads, so a wedged one can never keep the process alive):

* the sources' one I/O thread (:mod:`edgefleet.agent.sources.hub`, shared by every source
  of the process) pushing ``(n, C)`` blocks into each stream's
  :class:`~edgefleet.runtime.ringbuffer.StreamBuffer`;
* the inference worker: has the :class:`~edgefleet.agent.model_slot.ModelSlot` load the bundle
  and model (retrying while they fail), then takes batches from the
  :class:`~edgefleet.runtime.batcher.Batcher`, runs each on the model checked out of the slot
  (``preprocess -> predict``) and checks the outputs' shapes;
* the writer (:mod:`edgefleet.agent.writer`): turns each batch's outputs into answers
  (``interpret_batch``) and one row per window (:mod:`edgefleet.agent.results`: plain tuples,
  no object per window), and groups rows into batched transactions
  (``Store.write_result_rows``). Building rows there rather than in the inference worker
  lets it overlap the next model call (which runs without the GIL). Batch observers (drift)
  run there too; with a fallback router the worker interprets the batch itself, since it needs
  the answers; the rows are made the same way, and the router's records are derived from them.

A model that fails to load never stops the agent: the failure becomes an event and
the pipeline's ``problems`` (status reports it unhealthy) and the load is retried.
While the bundle's manifest is readable the sources keep running and buffering
(the ring buffers' back-pressure policy bounds memory).

Fallback seam: an optional :class:`FallbackRouter` sees each batch with its edge
predictions and may claim windows with a reason; claimed windows are the router's
to answer (from the cloud, or by handing back the edge record) through
:meth:`Pipeline.deliver`. Without a router every window is answered by the edge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edgefleet.agent.health import StreamHealth, collect_stream_health
from edgefleet.agent.inference import BatchObserver, BatchRunner, ShadowTap
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.model_slot import LoadedModel, ModelSlot
from edgefleet.agent.routing import FallbackRouter, offer
from edgefleet.agent.sources.hub import default_hub
from edgefleet.agent.store import ResultRecord, Store
from edgefleet.agent.writer import ResultWriter, WriterSettings
from edgefleet.errors import EdgefleetError
from edgefleet.runtime import Model
from edgefleet.runtime.batcher import Batch, Batcher
from edgefleet.runtime.bundle import Bundle
from edgefleet.runtime.encoding import InputEncoder, encode_overlapping_windows
from edgefleet.runtime.ring_group import RingGroup
from edgefleet.runtime.ringbuffer import StreamBuffer
from edgefleet.types import BackpressurePolicy, FloatArray

__all__ = [
    "BatchObserver",
    "DrainReport",
    "FallbackRouter",
    "Pipeline",
    "PipelineSettings",
    "Sink",
    "SourceHandle",
    "StreamSpec",
]

log = logging.getLogger(__name__)

TimeArray = npt.NDArray[np.float64]
Sink = Callable[[FloatArray, TimeArray], object]


class SourceHandle(Protocol):
    """What the pipeline needs from a source (see ``edgefleet.agent.sources``)."""

    @property
    def channels(self) -> int: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class StreamSpec:
    """One input stream: its name and how to build its source once a sink exists."""

    name: str
    make_source: Callable[[Sink], SourceHandle]


@dataclass(frozen=True)
class PipelineSettings:
    max_batch_size: int = 16
    batch_timeout_s: float = 0.05
    buffer_capacity: int = 4096  # samples per stream
    backpressure: BackpressurePolicy = "drop_oldest"
    write_batch_size: int = 256  # results per transaction at most
    write_interval_s: float = 0.2  # longest a result waits for its transaction
    store_outputs: bool = False  # keep each result's raw output vector
    model_retry_s: float = 5.0
    max_pending_results: int = 100_000  # writer backlog bound while the store fails
    max_queued_batches: int = 32  # inference -> writer hand-over queue bound
    stall_after_s: float = 30.0  # a thread not looping for this long counts as hung


@dataclass
class DrainReport:
    drained_windows: int = 0
    pending_results_lost: int = 0
    completed: bool = True
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class _Prepared:
    """A checked-out model and how batches are fed to it."""

    loaded: LoadedModel
    preprocess: Callable[[FloatArray], FloatArray] | None
    encoder: InputEncoder | None


class Pipeline:
    """Builds and runs the data path for one configuration; rebuilt on reload."""

    def __init__(
        self,
        *,
        store: Store,
        streams: Sequence[StreamSpec],
        load_bundle: Callable[[], Bundle],
        settings: PipelineSettings | None = None,
        open_model: Callable[[Bundle], Model] | None = None,
        router: FallbackRouter | None = None,
        counters: PipelineCounters | None = None,
        observers: Sequence[BatchObserver] = (),
    ) -> None:
        self.store = store
        self.settings = settings or PipelineSettings()
        self.counters = counters or PipelineCounters()
        self._streams = list(streams)
        self.model_slot = ModelSlot(
            load_bundle=load_bundle,
            open_model=open_model,
            retry_s=self.settings.model_retry_s,
            add_event=self._add_event,
        )
        """The bundle and model batches run on; ``model_slot.swap(bundle)`` replaces them live."""
        self._router = router
        self._buffers: dict[str, StreamBuffer] = {}
        self._sources: dict[str, SourceHandle] = {}
        self._pending_sources: dict[str, SourceHandle] = {}
        self._sources_lock = threading.Lock()
        self.streams_started = threading.Event()
        """Set once every stream's source was started (or rejected)."""
        self._source_errors: dict[str, str] = {}
        self._batcher: Batcher | None = None
        self._hub_hooks: tuple[Callable[[], None], Callable[[], None]] | None = None
        self._writer = ResultWriter(
            store,
            self.counters,
            WriterSettings(
                batch_size=self.settings.write_batch_size,
                interval_s=self.settings.write_interval_s,
                max_queued_batches=self.settings.max_queued_batches,
                max_pending=self.settings.max_pending_results,
            ),
        )
        self._runner = BatchRunner(
            writer=self._writer,
            counters=self.counters,
            add_event=self._add_event,
            keep_outputs=self.settings.store_outputs,
            router=router,
            observers=observers,
        )
        self._stop_sources = threading.Event()
        self._stop_worker = threading.Event()
        self._draining = threading.Event()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        # Heartbeat (monotonic) of the inference thread, for stall detection.
        self._beat = time.monotonic()
        self._drained = 0

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._beat = time.monotonic()
        self._writer.start()
        self._worker = threading.Thread(target=self._work_loop, name="agent-inference", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> DrainReport:
        """Stop sources, infer every complete window still buffered, flush the store.

        Bounded by ``timeout``; whatever is left after it is reported, not waited for.
        """
        deadline = time.monotonic() + timeout
        report = DrainReport()
        with self._sources_lock:
            self._stop_sources.set()
            sources = list(self._sources.items())
        for name, source in sources:
            try:
                source.stop()
            except Exception as exc:  # a broken source must not block shutdown
                report.notes.append(f"source {name!r} failed to stop: {exc}")
                log.warning("source %s failed to stop: %s", name, exc)
        with self._sources_lock:
            hooks, self._hub_hooks = self._hub_hooks, None
        if hooks is not None:
            default_hub().remove_pass_hooks(*hooks)
        self._draining.set()
        self._wake.set()
        if self._batcher is not None:
            self._batcher.close()  # wake the worker; drain() still returns what is pending
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))
            if self._worker.is_alive():
                report.completed = False
                report.notes.append("inference worker did not finish draining in time")
                self._stop_worker.set()
        if not self._writer.stop(max(0.1, deadline - time.monotonic())):
            report.completed = False
            report.notes.append("writer did not flush in time")
        self.model_slot.close()
        report.drained_windows = self._drained
        report.pending_results_lost = self._writer.lost
        return report

    # -- results from elsewhere (fallback router) -----------------------------------------

    def deliver(self, records: Sequence[ResultRecord]) -> None:
        """Queue results produced outside the inference worker (e.g. cloud answers)."""
        self._writer.put(records)

    # -- introspection ------------------------------------------------------------------

    @property
    def first_result(self) -> threading.Event:
        """Set once the first results are committed (used by start-up benchmarks/tests)."""
        return self._writer.first_commit

    def buffers(self) -> dict[str, StreamBuffer]:
        return dict(self._buffers)

    def streams_health(self) -> dict[str, StreamHealth]:
        """Per stream: ring buffer counters, source counters, and why it is not running if so."""
        names = [spec.name for spec in self._streams]
        return collect_stream_health(names, self._buffers, self._sources, self._source_errors)

    def sources(self) -> dict[str, SourceHandle]:
        return dict(self._sources)

    def set_shadow(self, tap: ShadowTap | None) -> None:
        """Hand each inferred batch to an OTA shadow run (edgefleet/agent/ota_shadow.py), or stop."""
        self._runner.shadow = tap

    def model_info(self) -> dict[str, Any]:
        return self.model_slot.info(stopping=self._draining.is_set())

    def problems(self) -> list[str]:
        found: list[str] = []
        info = self.model_info()
        if not info["loaded"] and not self._draining.is_set():
            found.append(f"model not loaded: {info['error'] or 'loading'}")
        for name, error in self._source_errors.items():
            found.append(f"source {name!r}: {error}")
        if self._worker is not None and not self._worker.is_alive() and not self._draining.is_set():
            found.append("inference worker thread died")
        if self._worker is not None and not self._writer.alive and not self._draining.is_set():
            found.append("writer thread died")
        for name, seconds in self.stalled().items():
            found.append(f"{name} thread stalled for {seconds:.0f}s")
        return found

    def stalled(self) -> dict[str, float]:
        """Threads that have not come round their loop for ``stall_after_s``: name -> seconds."""
        if self._draining.is_set():
            return {}  # threads end one after the other while stopping
        if self._worker is None:
            return {}  # not started
        now = time.monotonic()
        beats = {"inference": self._beat, "writer": self._writer.heartbeat}
        limit = self.settings.stall_after_s
        return {name: now - beat for name, beat in beats.items() if now - beat > limit}

    def alive(self) -> bool:
        """Both threads run and make progress (the systemd watchdog is pinged only while this holds)."""
        threads_up = self._worker is not None and self._worker.is_alive() and self._writer.alive
        return threads_up and not self.stalled()

    # -- inference worker -----------------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the pipeline is stopping."""
        self._beat = time.monotonic()
        self._wake.wait(seconds)
        self._beat = time.monotonic()
        self._wake.clear()
        return self._draining.is_set() or self._stop_worker.is_set()

    def _add_event(
        self, kind: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        try:
            self.store.add_event(kind, message, level=level, data=data)
        except Exception as exc:
            log.warning("could not record %s event: %s", kind, exc)

    def _route_without_model(self, seconds: float) -> bool:
        """Between model load attempts: with a router, hand every ready window over for
        ``seconds``, else just wait. True if stopping."""
        if self._router is None or self._batcher is None:
            return self._wait(seconds)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stop_worker.is_set():
                return True
            self._beat = time.monotonic()
            batch = self._batcher.next_batch(timeout=0.2)
            if batch is None:
                if self._draining.is_set():
                    return True
                continue
            offer(self._router, batch.windows, None, [None] * len(batch.windows), self.counters)
        return False

    def _start_streams(self, bundle: Bundle) -> None:
        prep = bundle.manifest.preprocessing
        for spec in self._streams:
            # The ring comes first so that the source's sink is the ring's own push (no call in
            # between on every block); a rejected source's ring is dropped unused.
            buffer = StreamBuffer(
                spec.name,
                prep.channels,
                max(self.settings.buffer_capacity, prep.window_length * 2),
                window_length=prep.window_length,
                hop=prep.hop,
                policy=self.settings.backpressure,
            )
            try:
                source = spec.make_source(buffer.push_block)
            except Exception as exc:
                self._source_failed(spec.name, f"cannot be built: {exc}", "source_failed")
                continue
            if source.channels != prep.channels:
                msg = (
                    f"source gives {source.channels} channels per sample; "
                    f"model {bundle.manifest.name} expects {prep.channels}"
                )
                self._source_failed(spec.name, msg, "source_rejected")
                continue
            self._buffers[spec.name] = buffer
            self._pending_sources[spec.name] = source
        if not self._buffers:
            self.streams_started.set()
            return  # every stream was rejected (each reported); nothing to batch
        buffers = list(self._buffers.values())
        self._batcher = Batcher(
            buffers,
            max_batch_size=self.settings.max_batch_size,
            batch_timeout=self.settings.batch_timeout_s,
            # every stream here cuts the model's window shape: one array, one pop for all
            group=RingGroup(buffers) if len(buffers) > 1 else None,
        )
        if self.settings.backpressure != "block":
            # One consumer wake-up per pass of the sources' I/O thread, for all its streams. Not
            # under "block": a push waiting for room there must be able to wake the consumer.
            hooks = (self._batcher.hold_wakeups, self._batcher.release_wakeups)
            with self._sources_lock:  # stop() removes them once set; none are added after it
                if self._stop_sources.is_set():
                    return
                default_hub().add_pass_hooks(*hooks)
                self._hub_hooks = hooks
        for name, source in self._pending_sources.items():
            with self._sources_lock:
                if self._stop_sources.is_set():
                    return
                try:
                    source.start()
                except Exception as exc:
                    self._source_failed(name, f"failed to start: {exc}", "source_failed")
                    continue
                self._sources[name] = source
        self.streams_started.set()

    def _source_failed(self, stream: str, message: str, kind: str) -> None:
        self._source_errors[stream] = message
        log.error("stream %s: %s", stream, message, extra={"stream": stream})
        self._add_event(kind, f"stream {stream}: {message}", level="error", data={"stream": stream})

    def _work_loop(self) -> None:
        try:
            bundle = self.model_slot.acquire_bundle(self._wait)
            if bundle is None:
                return
            self._start_streams(bundle)
            if self._batcher is None:
                # No stream can feed this model: stay up (status says why) until stopped.
                while not self._wait(self.settings.model_retry_s):
                    pass
                return
            if self.model_slot.acquire_model(bundle, self._route_without_model) is None:
                return
            self._infer_loop()
        except Exception:  # the last line of defence: report, never crash the process
            log.exception("inference worker failed")
            self._add_event(
                "pipeline_failed", "inference worker stopped on an unexpected error", level="error"
            )

    def _prepare(self, loaded: LoadedModel, first: bool) -> _Prepared:
        """How batches reach ``loaded``'s model: normalized by the model itself when it can,
        from the codes the streams quantized at ingest for the first model (a swapped-in
        model takes the float path: the streams keep the first model's encoders)."""
        bundle, model = loaded.bundle, loaded.model
        preprocess = None if self._fold_normalization(bundle, model) else bundle.preprocess
        # Encoding at ingest pays only when a pop carries many windows of one stream: with several
        # streams a batch is one pop per stream, and one encoder call per pop (for a window's
        # new rows) costs more than quantizing the whole batch in one pass (docs/batching.md).
        ingest = preprocess is None and first and len(self._buffers) == 1
        encoder = self._attach_encoders(model) if ingest else None
        return _Prepared(loaded, preprocess, encoder)

    def _fold_normalization(self, bundle: Bundle, model: Model) -> bool:
        """Let the model normalize its input itself (folded into its input quantizer: one pass
        over the batch instead of two); False when it cannot and ``Bundle.preprocess`` must."""
        prep = bundle.manifest.preprocessing
        try:
            model.set_input_normalization(prep.mean, prep.std)
        except EdgefleetError as exc:
            log.info("model %s normalizes in Python: %s", bundle.manifest.name, exc)
            return False
        return True

    def _infer_loop(self) -> None:
        batcher = self._batcher
        assert batcher is not None
        prepared: _Prepared | None = None
        while not self._stop_worker.is_set():
            if self._draining.is_set():
                # Sources are stopped: infer every complete window still buffered, then finish.
                for remaining in batcher.drain():
                    if self._stop_worker.is_set():
                        return
                    self._drained += len(remaining.windows)
                    prepared = self._run_on_slot(remaining, prepared)
                # The router closed first: the windows it was waiting on came back to the edge.
                while not self._stop_worker.is_set() and (late := self._runner.given_back()) is not None:
                    prepared = self._run_on_slot(late, prepared)
                return
            self._beat = time.monotonic()
            batch = batcher.next_batch(timeout=0.5)
            if batch is None:  # idle: infer the windows the cloud gave back (fallback_offload)
                batch = self._runner.given_back()
            if batch is not None:
                prepared = self._run_on_slot(batch, prepared)

    def _run_on_slot(self, batch: Batch, prepared: _Prepared | None) -> _Prepared | None:
        """Run ``batch`` on the slot's current model, held until the batch is handed on."""
        loaded = self.model_slot.checkout()
        if loaded is None:  # closed while stopping: only a timed-out drain gets here
            self._runner.failed(batch, RuntimeError("no model: the model slot is closed"))
            return prepared
        try:
            if prepared is None or prepared.loaded is not loaded:
                prepared = self._prepare(loaded, first=prepared is None)
            self._runner.run(loaded.bundle, loaded.model, batch, prepared.preprocess, prepared.encoder)
        finally:
            self.model_slot.checkin(loaded)
        return prepared

    def _attach_encoders(self, model: Model) -> InputEncoder | None:
        """Have every stream quantize its samples once for ``model`` (integer-input models with
        overlapping windows; see :mod:`edgefleet.runtime.encoding`). One of the encoders, or None."""
        attached = None
        for buffer in self._buffers.values():
            attached = encode_overlapping_windows(model, buffer) or attached
        return attached
