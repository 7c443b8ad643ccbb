"""The device side of the cloud fallback: which windows to ask the cloud about, and the live request.

:class:`CloudRouter` implements :class:`~edgefleet.agent.routing.FallbackRouter`. Its
:class:`~edgefleet.agent.fallback_policy.FallbackPolicy` claims a window when the edge cannot
answer well (no model, buffer over its high-water mark, inference latency p95 over its objective),
when the input is out of distribution (drift alert, outside the reference's range) or when the
edge answer is unsure (top probability, top-2 margin, entropy, or among the least confident
``fallback.target_share`` of recent windows); the device's state comes from a
signal source (:mod:`edgefleet.agent.fallback_signals`) attached once the pipeline exists. A
claimed window goes **straight to the broker** as an ``infer/request`` (through ``publish``, not
the store's outbox, whose priorities and budget would defeat the latency objective) and waits at
most ``latency_slo_ms`` for its ``infer/response``:

* the cloud answers in time: a result with ``answered_by="cloud"`` and the policy's reason;
* it does not (``timeout``), the cloud refuses (``cloud_error``), the publish fails (``offline``),
  the budget is spent (``budget``: :class:`~edgefleet.agent.fallback_budget.FallbackBudget`,
  requests per minute and bytes per hour) or the router is closed (``shutdown``): the **edge**
  answer is stored, its ``fallback_reason`` saying ``<reason>:<outcome>``, e.g.
  ``low_confidence:timeout`` - all through :meth:`CloudRouter._finish_edge`;
* too many requests are pending (``queue_full``): the window is not claimed, its edge answer is
  stored unflagged.

Nothing waits forever and every claimed window with an edge answer ends up stored exactly once:
a response that arrives after its deadline, or for an id never sent, is only counted
(``late_responses``, ``unknown_responses``). The agent builds one from ``[fallback]`` when
``fallback.enabled`` and sync are on (requests through ``SyncService.publish_live``, answers through
its ``infer/response`` handler); :meth:`CloudRouter.fallback_stats` is what its status reports.
A window that ends in ``timeout``, ``offline`` or ``budget`` is kept in the store for a late answer
when a :class:`~edgefleet.agent.fallback_deferred.DeferredEscalation` is given
(``fallback.deferred_max_bytes`` > 0); the late answer is attached to the same result.
With a :class:`~edgefleet.agent.fallback_offload.CapacityOffload` (``offloader``;
``fallback.offload_capacity``) the capacity reasons are judged before the model call
(:meth:`CloudRouter.offload`) and the windows they claim are sent *without* an edge answer; one
the cloud fails is given back to the edge (inferred late, flagged), as is a ``no_model`` window.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgefleet.agent.config import AgentConfig, FallbackConfig
from edgefleet.agent.fallback_budget import FallbackBudget
from edgefleet.agent.fallback_deferred import DeferredEscalation
from edgefleet.agent.fallback_offload import CapacityOffload, OffloadSplit
from edgefleet.agent.fallback_policy import (
    CapacityPolicy,
    ConfidencePolicy,
    FallbackPolicy,
    OutOfDistributionPolicy,
    Signals,
    SignalSource,
)
from edgefleet.agent.fallback_share import ShareTarget
from edgefleet.agent.metrics import percentile
from edgefleet.agent.store import ResultRecord, Store
from edgefleet.agent.store.deferred import DeferredStore
from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import Envelope, InferRequestBody, InferResponseBody, make_envelope
from edgefleet.cloud_sync.topics import device_topic
from edgefleet.errors import ProtocolError
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Prediction
from edgefleet.runtime.ringbuffer import Window

__all__ = [
    "CloudRouter",
    "ConfidencePolicy",
    "Deliver",
    "FallbackPolicy",
    "Publish",
    "policy_from_config",
    "router_from_config",
]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], str | None]
"""``publish(topic, payload)``: None once handed to the broker client, else why not."""
Deliver = Callable[[Sequence[ResultRecord]], None]
_EXPIRED_KEPT = 10_000  # ids remembered to tell a late response from an unknown one
_LATENCIES_KEPT = 1024  # recent cloud round trips for the p50/p95 in the stats
_NO_SIGNALS = Signals()


@dataclass
class _Pending:
    request_id: str
    reason: str
    edge: ResultRecord | None
    window: Window
    sent_at: float
    deadline: float


class CloudRouter:
    """Live cloud requests for unsure windows, with a latency objective; see the module docstring."""

    def __init__(
        self,
        *,
        device_id: str,
        publish: Publish,
        deliver: Deliver,
        policy: FallbackPolicy | ConfidencePolicy | None = None,
        latency_slo_ms: float = 500.0,
        max_pending: int = 256,
        prefix: str = "edgefleet/v1",
        budget: FallbackBudget | None = None,
        signals: SignalSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        deferred: DeferredEscalation | None = None,
        offloader: CapacityOffload | None = None,
    ) -> None:
        self.device_id = device_id
        if isinstance(policy, ConfidencePolicy):
            policy = FallbackPolicy(confidence=policy)
        self.policy = policy or FallbackPolicy()
        self.offloader = offloader
        """With one, the capacity reasons are judged before inference (:meth:`offload`), not after."""
        if offloader is not None and offloader.capacity != CapacityPolicy():
            self.policy = replace(self.policy, capacity=CapacityPolicy())  # judged before inference
        self.budget = budget or FallbackBudget(clock=clock)
        self._signals = signals
        self.deferred = deferred
        """Keeps windows that timed out (or could not be sent) for a late answer; None: not kept."""
        self.latency_slo_s = latency_slo_ms / 1000.0
        self.max_pending = max_pending
        self.prefix = prefix
        self.request_topic = device_topic(device_id, "infer/request", prefix=prefix)
        self.response_topic = device_topic(device_id, "infer/response", prefix=prefix)
        self._publish = publish
        self._deliver = deliver
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._expired: dict[str, None] = {}  # recently timed-out ids, oldest first, bounded
        self._cond = threading.Condition()
        self._closed = False
        self.counts: Counter[str] = Counter()
        """``sent``, ``cloud``, ``timeout``, ``offline``, ``cloud_error``, ``budget``, ``shutdown``,
        ``queue_full``, ``late_responses``, ``unknown_responses``, ``bad_responses``."""
        self.reasons: Counter[str] = Counter()
        """Windows claimed per policy reason (``low_confidence``, ``drift_alert``, ...)."""
        self.cloud_latency_ms: deque[float] = deque(maxlen=_LATENCIES_KEPT)
        self._timer = threading.Thread(target=self._expire_loop, name="edgefleet-cloud-router", daemon=True)
        self._timer.start()

    def attach_signals(self, signals: SignalSource) -> None:
        """Read the device's state (drift, buffers, latency, model) from ``signals`` per batch."""
        self._signals = signals

    # --- FallbackRouter -------------------------------------------------------------------------
    def route(self, windows: Sequence[Window], predictions: Sequence[Prediction] | None) -> list[str | None]:
        signals = self._signals() if self._signals is not None and predictions is not None else _NO_SIGNALS
        reasons: list[str | None] = []
        with self._cond:
            room = self.max_pending - len(self._pending)
        claimed: Counter[str] = Counter()
        full = 0
        # Without a model a window has no edge answer to keep: with an offloader it is claimed even
        # past the room, and submit() gives it back to wait for the model (queue_full).
        unlimited = predictions is None and self.offloader is not None
        for reason in self.policy.flags(windows, predictions, signals):
            if reason is not None and room <= 0 and not unlimited:
                full += 1
                reason = None  # keep the edge answer; the cloud is saturated
            elif reason is not None:
                room -= 1
                claimed[reason] += 1
            reasons.append(reason)
        if claimed or full:
            with self._cond:
                self.reasons.update(claimed)
                self.counts["queue_full"] += full
        return reasons

    def submit(self, window: Window, reason: str, edge_result: ResultRecord | None) -> None:
        request_id = uuid.uuid4().hex
        body = InferRequestBody(
            request_id=request_id,
            stream=window.stream,
            window_seq=window.seq,
            window_start=window.start_ts,
            window_end=window.end_ts,
            shape=list(window.data.shape),
            data=np.ascontiguousarray(window.data, dtype="<f4").tobytes(),
            fallback_reason=reason,
            edge_label=edge_result.label if edge_result is not None else None,
            edge_score=edge_result.score if edge_result is not None else None,
        )
        payload = encode_message(make_envelope(self.device_id, "infer/request", body))
        now = self._clock()
        pending = _Pending(request_id, reason, edge_result, window, now, now + self.latency_slo_s)
        if edge_result is None and self.offloader is not None:
            with self._cond:
                full = len(self._pending) >= self.max_pending
            if full:
                self._finish_edge(pending, "queue_full")  # given back: the edge infers it later
                return
        if not self.budget.spend(len(payload)):
            self._finish_edge(pending, "budget")
            return
        with self._cond:
            self._pending[request_id] = pending
            self._cond.notify_all()
        error = self._publish(self.request_topic, payload)
        if error is not None:
            self._settle(request_id, outcome="offline", detail=error)
            return
        with self._cond:
            self.counts["sent"] += 1

    # --- capacity offload (edgefleet.agent.fallback_offload) ---------------------------------------
    def offload(self, batch: Batch | None) -> OffloadSplit:
        """Before the model call: send ``batch``'s windows over capacity instead of inferring them;
        what the edge must infer now is the rest plus the windows the cloud gave back."""
        offloader = self.offloader
        if offloader is None:
            return OffloadSplit(batch)
        if batch is None:
            return offloader.idle()
        resumed = offloader.resume(batch)
        if resumed is not None:  # the given-back windows idle() handed out: never offloaded twice
            return resumed
        with self._cond:
            room = 0 if self._closed else self.max_pending - len(self._pending)
        if room <= 0 or not offloader.active:
            return offloader.merge(None, batch)
        windows = batch.windows
        signals = self._signals() if self._signals is not None else _NO_SIGNALS
        reasons = offloader.reasons(windows, signals, room)
        if not any(reasons):
            return offloader.merge(None, batch)
        keep: list[Window] = []
        for window, reason in zip(windows, reasons, strict=True):
            if reason is None:
                keep.append(window)
                continue
            with self._cond:
                self.reasons[reason] += 1
            offloader.offloaded += 1
            self.submit(window, reason, None)  # no edge answer: a failure gives it back
        return offloader.merge(keep, None)

    # --- responses (the MQTT client's thread) ---------------------------------------------------
    def on_response(self, topic: str, payload: bytes) -> None:
        """Handle one ``infer/response`` message; never raises."""
        try:
            envelope = decode_message(topic, payload, prefix=self.prefix)
        except ProtocolError as exc:
            with self._cond:
                self.counts["bad_responses"] += 1
            log.warning("refused a cloud response on %s: %s", topic, exc)
            return
        self.on_envelope(envelope)

    def on_envelope(self, envelope: Envelope) -> None:
        """Handle one decoded ``infer/response`` (the sync service's downlink handler)."""
        body = envelope.body
        if not isinstance(body, InferResponseBody) or envelope.device_id != self.device_id:
            with self._cond:
                self.counts["bad_responses"] += 1
            return
        with self._cond:
            pending = self._pending.pop(body.request_id, None)
        if pending is None and self.deferred is not None and self.deferred.on_response(body):
            return  # a late answer for a deferred window (fallback_deferred.py): attached there
        with self._cond:
            if pending is None:
                key = "late_responses" if body.request_id in self._expired else "unknown_responses"
                self.counts[key] += 1
                return
        if body.error is not None or body.label is None:
            self._finish_edge(pending, "cloud_error")
            return
        latency_ms = (self._clock() - pending.sent_at) * 1000.0
        model = (body.model_name or "cloud", body.model_version or "")
        record = ResultRecord(
            stream=pending.window.stream,
            window_start=pending.window.start_ts,
            window_end=pending.window.end_ts,
            model_name=model[0],
            model_version=model[1],
            label=body.label,
            score=body.score,
            outputs=body.outputs,
            latency_ms=latency_ms,
            answered_by="cloud",
            fallback_reason=pending.reason,
            window_seq=pending.window.seq,
        )
        with self._cond:
            self.counts["cloud"] += 1
            self.cloud_latency_ms.append(latency_ms)
        self._deliver([record])

    # --- deadlines --------------------------------------------------------------------------------
    def _expire_loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = self._clock()
                due = [rid for rid, p in self._pending.items() if p.deadline <= now]
                if not due:
                    nearest = min((p.deadline for p in self._pending.values()), default=None)
                    self._cond.wait(None if nearest is None else max(0.0, nearest - now))
                    continue
            for rid in due:
                self._settle(rid, outcome="timeout")

    def _settle(self, request_id: str, *, outcome: str, detail: str | None = None) -> None:
        with self._cond:
            pending = self._pending.pop(request_id, None)
            if pending is None:
                return  # answered meanwhile
            if outcome == "timeout":
                self._expired[request_id] = None
                if len(self._expired) > _EXPIRED_KEPT:
                    del self._expired[next(iter(self._expired))]
        if detail:
            log.warning("cloud fallback %s: %s", outcome, detail)
        self._finish_edge(pending, outcome)

    def _finish_edge(self, pending: _Pending, outcome: str) -> None:
        with self._cond:
            self.counts[outcome] += 1
        flag = f"{pending.reason}:{outcome}"
        if pending.edge is not None:
            edge = replace(pending.edge, fallback_reason=flag)
            if self.deferred is not None and self.deferred.keep(
                pending.window, edge, outcome, pending.request_id
            ):
                return  # stored with its window, for a late answer (fallback_deferred.py)
            self._deliver([edge])
        elif self.offloader is not None:
            self.offloader.give_back(pending.window, flag)  # the edge infers it late, flagged

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def fallback_stats(self) -> dict[str, Any]:
        """The router's figures for the device status (``status.fallback``): counts since start,
        the budget's use now (0 for a limit means none) and the recent cloud round trips."""
        requests, spent = self.budget.usage()
        with self._cond:
            counts = self.counts
            latencies = list(self.cloud_latency_ms)
            reasons = dict(self.reasons)
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        deferred = Counter(self.deferred.snapshot()) if self.deferred is not None else Counter()
        return {
            "sent": counts["sent"],
            "answered_cloud": counts["cloud"],
            "timeouts": counts["timeout"],
            "budget_refused": counts["budget"],
            "offline": counts["offline"],
            "deferred": deferred["kept"],
            # with deferred escalation a late answer is attached to its stored result; without, only counted
            "late_answers": deferred["late"] if self.deferred is not None else counts["late_responses"],
            "requests_last_min": requests,
            "bytes_last_hour": spent,
            "max_requests_per_min": self.budget.max_requests_per_min or 0,
            "max_bytes_per_hour": self.budget.max_bytes_per_hour or 0,
            "latency_p50_ms": 0.0 if p50 is None else round(p50, 3),
            "latency_p95_ms": 0.0 if p95 is None else round(p95, 3),
            "reasons": reasons,
            **self._offload_stats(),
        }

    def _offload_stats(self) -> dict[str, int]:
        offloader = self.offloader
        if offloader is None:
            return {}
        return {
            "offloaded": offloader.offloaded,
            "given_back": offloader.given_back,
            "given_back_waiting": offloader.pending_given_back(),
            "given_back_dropped": offloader.given_back_dropped,
        }

    def close(self) -> None:
        """Stop waiting: every pending window keeps its edge answer (``<reason>:shutdown``)."""
        with self._cond:
            self._closed = True
            leftover = list(self._pending)
            self._cond.notify_all()
        self._timer.join(5)
        for rid in leftover:
            self._settle(rid, outcome="shutdown")
        if self.deferred is not None:
            self.deferred.close()  # its windows stay in the store, sent after the next start


def policy_from_config(fallback: FallbackConfig) -> FallbackPolicy:
    """The policies ``[fallback]`` asks for (``[fallback.models.<name>]`` keys override its
    confidence thresholds for that model; ``target_share`` replaces them all)."""
    default = ConfidencePolicy(
        min_confidence=fallback.min_confidence,
        min_margin=fallback.min_margin,
        max_entropy=fallback.max_entropy,
    )
    per_model = {
        name: replace(default, **{k: v for k, v in model.model_dump().items() if v is not None})
        for name, model in fallback.models.items()
    }
    return FallbackPolicy(
        confidence=default,
        per_model=per_model,
        ood=OutOfDistributionPolicy(
            on_drift=fallback.on_drift, on_out_of_range=fallback.range_tolerance is not None
        ),
        capacity=CapacityPolicy(
            queue_high_water=fallback.queue_high_water, latency_p95_ms=fallback.inference_p95_slo_ms
        ),
        share=None
        if fallback.target_share is None
        else ShareTarget(fallback.target_share, window=fallback.target_window, score=fallback.score),
    )


def router_from_config(
    config: AgentConfig, *, publish: Publish, deliver: Deliver, store: Store | None = None
) -> CloudRouter | None:
    """The agent's router from ``[fallback]``; None unless fallback and sync are both enabled
    (:func:`edgefleet.agent.inactive.inactive_settings` says so when only fallback is). Its
    signals are attached once the pipeline exists (:func:`edgefleet.agent.pipeline_build.build_pipeline`).
    With a ``store`` and ``deferred_max_bytes`` > 0 it keeps timed-out windows for a late answer."""
    fallback = config.fallback
    if not (fallback.enabled and config.sync.enabled):
        return None
    # One budget for live requests and deferred resends: a resend spends what a live request would.
    budget = FallbackBudget(
        max_requests_per_min=fallback.max_requests_per_min, max_bytes_per_hour=fallback.max_bytes_per_hour
    )
    deferred = None
    if store is not None and fallback.deferred_max_bytes > 0:
        deferred = DeferredEscalation(
            budget=budget,
            deferred=DeferredStore(store, max_bytes=fallback.deferred_max_bytes),
            device_id=config.device.id,
            publish=publish,
            deliver=deliver,
            prefix=config.sync.topic_prefix,
            retry_after_s=max(30.0, fallback.latency_slo_ms / 1000.0 * 4),
        )
        deferred.start()
    return CloudRouter(
        deferred=deferred,
        device_id=config.device.id,
        publish=publish,
        deliver=deliver,
        policy=policy_from_config(fallback),
        latency_slo_ms=fallback.latency_slo_ms,
        max_pending=fallback.max_queue_windows,
        prefix=config.sync.topic_prefix,
        budget=budget,
        # Always one: it also holds the no_model windows the cloud gives back until a model loads.
        offloader=CapacityOffload(
            CapacityPolicy(
                queue_high_water=fallback.queue_high_water, latency_p95_ms=fallback.inference_p95_slo_ms
            )
            if fallback.offload_capacity
            else CapacityPolicy(),
            max_given_back=fallback.give_back_max_windows,
        ),
    )
