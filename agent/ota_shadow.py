"""Shadow mode: a validated candidate runs beside the active model before it may be promoted.

While a :class:`ShadowRun` is attached (``Pipeline.set_shadow``), the inference worker hands it
every batch it has just inferred with the active model (:meth:`ShadowRun.tap`). The tap takes
whole batches until about ``share`` of the windows were taken (whole batches, so the candidate's
latency is compared with the active model's on the same batch sizes), copies them and queues
them for the run's own thread, which infers them with the candidate and compares: top label
(agreement), mean top score (confidence) and batch latency. Only the active model's answers
are ever stored; the candidate's are counted, never written.

Why its own thread rather than right after the active batch in the inference thread: there the
candidate's inference would delay every following answer of the active model by its latency on
each sampled batch. In a thread, the runtimes release the GIL while they infer, so the active
model keeps its pace on a multi-core device; the tap itself is a copy and a non-blocking put.
When the candidate falls behind, the queue (a few batches) is full and sampled batches are
dropped and counted (``dropped_windows``), never waited for. The price: both models compete for
the cores, so the candidate's latency here is pessimistic; the latency limits are off by default.

:func:`judge` turns the collected :class:`ShadowStats` into a verdict against
:class:`ShadowLimits`; the installer (:mod:`edgefleet.agent.ota_install`) refuses promotion
(``failed``, ``shadow: ...``) when it fails.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefleet.agent.metrics import percentile
from edgefleet.runtime import Model
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Bundle

__all__ = ["ShadowLimits", "ShadowRun", "ShadowStats", "judge"]

log = logging.getLogger(__name__)

_QUEUE_BATCHES = 4


@dataclass(frozen=True)
class ShadowLimits:
    share: float = 0.25
    min_windows: int = 20
    min_agreement: float | None = 0.8
    min_confidence_ratio: float | None = 0.8
    max_latency_ratio: float | None = None
    max_latency_ms: float | None = None
    max_error_rate: float = 0.05


@dataclass
class ShadowStats:
    """What the candidate did on the windows it shadowed (all counts in windows)."""

    windows: int = 0
    agreed: int = 0
    labelled: int = 0
    candidate_score_sum: float = 0.0
    active_score_sum: float = 0.0
    scored: int = 0
    errors: int = 0
    dropped: int = 0
    candidate_ms: list[float] = field(default_factory=list)
    active_ms: list[float] = field(default_factory=list)
    last_error: str | None = None

    def add(
        self,
        active_labels: Sequence[str | None],
        active_scores: Sequence[float | None],
        candidate_labels: Sequence[str | None],
        candidate_scores: Sequence[float | None],
        active_ms: float,
        candidate_ms: float,
    ) -> None:
        self.windows += len(active_labels)
        for a, c in zip(active_labels, candidate_labels, strict=True):
            if a is not None and c is not None:
                self.labelled += 1
                self.agreed += a == c
        for a_score, c_score in zip(active_scores, candidate_scores, strict=True):
            if a_score is not None and c_score is not None:
                self.scored += 1
                self.active_score_sum += a_score
                self.candidate_score_sum += c_score
        self.active_ms.append(active_ms)
        self.candidate_ms.append(candidate_ms)

    def metrics(self) -> dict[str, Any]:
        def ratio(num: float | None, den: float | None) -> float | None:
            return None if num is None or not den else round(num / den, 4)

        agreement = ratio(self.agreed, self.labelled) if self.labelled else None
        cand_conf = self.candidate_score_sum / self.scored if self.scored else None
        act_conf = self.active_score_sum / self.scored if self.scored else None
        cand_p95 = percentile(self.candidate_ms, 95)
        act_p95 = percentile(self.active_ms, 95)
        return {
            "windows": self.windows,
            "batches": len(self.candidate_ms),
            "dropped_windows": self.dropped,
            "errors": self.errors,
            "agreement": agreement,
            "candidate_confidence": None if cand_conf is None else round(cand_conf, 4),
            "active_confidence": None if act_conf is None else round(act_conf, 4),
            "confidence_ratio": ratio(cand_conf, act_conf),
            "candidate_p95_ms": None if cand_p95 is None else round(cand_p95, 3),
            "active_p95_ms": None if act_p95 is None else round(act_p95, 3),
            "latency_ratio": ratio(cand_p95, act_p95),
        }


def judge(stats: ShadowStats, limits: ShadowLimits, seconds: float) -> str | None:
    """Why the candidate must not be promoted, or None when it passed every configured limit."""
    m = stats.metrics()
    seen = stats.windows + stats.errors
    if seen and stats.errors / seen > limits.max_error_rate:
        return (
            f"the candidate failed inference on {stats.errors} of {seen} shadowed windows"
            f" (at most {limits.max_error_rate:.0%} allowed): {stats.last_error}"
        )
    if stats.windows < limits.min_windows:
        return (
            f"only {stats.windows} windows compared in {seconds:g} s (at least {limits.min_windows} needed;"
            " hint: a longer shadow run, a larger [ota] shadow_share, or data flowing on the streams)"
        )
    breaches = []
    agreement = m["agreement"]
    if limits.min_agreement is not None and agreement is not None and agreement < limits.min_agreement:
        breaches.append(
            f"agreement {agreement:.2f} with the active model (at least {limits.min_agreement:g})"
        )
    conf = m["confidence_ratio"]
    if limits.min_confidence_ratio is not None and conf is not None and conf < limits.min_confidence_ratio:
        breaches.append(
            f"mean confidence {m['candidate_confidence']:.3f} vs the active model's"
            f" {m['active_confidence']:.3f} (at least {limits.min_confidence_ratio:g}x required)"
        )
    lat = m["latency_ratio"]
    if limits.max_latency_ratio is not None and lat is not None and lat > limits.max_latency_ratio:
        breaches.append(
            f"p95 batch latency {lat:.2f}x the active model's (at most {limits.max_latency_ratio:g}x)"
        )
    p95 = m["candidate_p95_ms"]
    if limits.max_latency_ms is not None and p95 is not None and p95 > limits.max_latency_ms:
        breaches.append(f"p95 batch latency {p95:.1f} ms (at most {limits.max_latency_ms:g} ms)")
    return "; ".join(breaches) or None


class ShadowRun:
    """One candidate's shadow run: :meth:`tap` for the inference worker, a thread that infers."""

    def __init__(self, candidate: Bundle, model: Model, share: float) -> None:
        self.candidate = candidate
        self.model = model
        self.share = share
        self.stats = ShadowStats()
        self._lock = threading.Lock()
        self._credit = 0.0
        self._queue: queue.Queue[tuple[Bundle, np.ndarray[Any, Any], dict[str, Any], float]] = queue.Queue(
            _QUEUE_BATCHES
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ota-shadow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch being inferred; the candidate model is left to the caller to close."""
        self._stop.set()
        self._thread.join(30.0)

    def tap(self, bundle: Bundle, batch: Batch, outputs: Mapping[str, Any], latency_ms: float) -> None:
        """Called by the inference worker after each active batch: quick, never raises."""
        n = len(batch)
        self._credit += self.share * n
        if self._credit < n:
            return
        self._credit -= n
        try:
            # Copies: the batch's data can be a view of a ring buffer that is reused.
            item = (
                bundle,
                np.array(batch.data, copy=True),
                {k: np.array(v) for k, v in outputs.items()},
                latency_ms,
            )
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self.stats.dropped += n
        except Exception as exc:  # the active model's path must never fail because of a shadow
            log.warning("shadow tap failed: %s", exc)

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            return self.stats.metrics()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                active_bundle, data, outputs, active_ms = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                started = time.monotonic()
                out = self.model.predict(self.candidate.preprocess(data))
                candidate_ms = (time.monotonic() - started) * 1000.0
                self.candidate.check_outputs(out, len(data))
                cand = self.candidate.interpret_batch(out)
                active = active_bundle.interpret_batch(outputs)
            except Exception as exc:  # a failing candidate is a finding, not a crash
                with self._lock:
                    self.stats.errors += len(data)
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                continue
            with self._lock:
                self.stats.add(
                    active.labels, active.scores, cand.labels, cand.scores, active_ms, candidate_ms
                )
