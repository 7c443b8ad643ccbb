"""Uplink ingest: decode every MQTT message, batch them, store each batch in one transaction.

The MQTT network thread only enqueues ``(topic, payload, received_at)``; one writer thread decodes
and commits every ``batch_max_messages`` messages or ``batch_max_delay_ms``, whichever comes first.
A message that fails to decode is counted and logged with its topic and reason, never raised.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.protocol import (
    DriftBody,
    Envelope,
    EventsBody,
    ResultsBody,
    ResultUpdateBody,
    StatusBody,
    TelemetryBody,
)
from edgefleet.cloud_sync.topics import ACKNOWLEDGED_KINDS
from edgefleet.controller.acks import AckRef
from edgefleet.controller.config import IngestConfig
from edgefleet.controller.dal import Database, IngestOutcome
from edgefleet.controller.drift_counts import counts_of_body
from edgefleet.controller.records import (
    CommandAck,
    DriftItem,
    IngestMessage,
    LateAnswer,
    StatusUpdate,
    StoredEvent,
    StoredResult,
    TelemetryItem,
)
from edgefleet.controller.schemas import IngestStatsOut
from edgefleet.errors import ProtocolError
from edgefleet.types import JSONValue

__all__ = ["NO_LABEL", "IngestPipeline", "IngestStats", "envelope_to_message", "metric_key"]

log = logging.getLogger(__name__)

NO_LABEL = "(none)"
"""Label stored for results that carry none (e.g. a regression model)."""
_SKEW_TOLERANCE_S = 2.0
_ACK_FAILURE_SUFFIXES = ("failed", "refused", "rejected", "error")
_ACK_OUTCOMES = ("acked", "done")
_LOG_FIRST = 20
_LOG_EVERY = 1000


def metric_key(name: str, labels: dict[str, str]) -> str:
    """``name`` or ``name{k=v,...}`` with labels sorted: one stored series per label set."""
    if not labels:
        return name
    return name + "{" + ",".join(f"{k}={labels[k]}" for k in sorted(labels)) + "}"


def _clock_offset(envelope: Envelope, received_at: float) -> float:
    # Device clocks are not trusted (docs/protocol.md): shift device timestamps by the skew that
    # sent_at reveals, unless it is within network jitter.
    if envelope.sent_at is None or not math.isfinite(envelope.sent_at):
        return 0.0
    skew = received_at - envelope.sent_at
    return skew if abs(skew) > _SKEW_TOLERANCE_S else 0.0


def _ack_from_event(
    device_id: str, kind: str, ts: float, message: str, data: dict[str, Any]
) -> CommandAck | None:
    command_id = data.get("command_id")
    if not kind.startswith("command.") or not isinstance(command_id, str):
        return None
    ok = not kind.endswith(_ACK_FAILURE_SUFFIXES) and data.get("ok", True) is not False
    outcome = kind.removeprefix("command.")
    status = outcome if ok and outcome in _ACK_OUTCOMES else ("acked" if ok else "failed")
    if outcome in ("expired", "unknown"):
        status, ok = outcome, False
    return CommandAck(
        command_id=command_id, device_id=device_id, ok=ok, ts=ts, detail=message or None, status=status
    )


def _clean_json(value: Any) -> Any:
    """``value`` with NaN/infinity replaced by None: they are not JSON and the API must serve it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def envelope_to_message(envelope: Envelope, *, received_at: float) -> IngestMessage:
    """The controller's view of one decoded envelope (``message_id`` 0: never de-duplicated).

    Non-finite device timestamps become the receive time; non-finite values are dropped (telemetry)
    or stored as null, so that one odd message can never fail a whole batch's transaction.
    """
    offset = _clock_offset(envelope, received_at)

    def when(device_ts: float) -> float:
        shifted = device_ts + offset
        return shifted if math.isfinite(shifted) else received_at

    message = IngestMessage(
        device_id=envelope.device_id,
        message_id=f"{envelope.message_id}:{envelope.part}" if envelope.message_id else None,
        kind=envelope.kind,
        received_at=received_at,
        sent_at=envelope.sent_at,
        parts=envelope.parts,
    )
    body = envelope.body
    if isinstance(body, TelemetryBody):
        message.telemetry = [
            TelemetryItem(metric=metric_key(p.name, p.labels), ts=when(p.ts), value=p.value)
            for p in body.samples
            if math.isfinite(p.value)
        ]
    elif isinstance(body, ResultsBody):
        message.results = [
            StoredResult(
                ts=when(r.window_end),
                label=r.label if r.label is not None else NO_LABEL,
                latency_ms=r.latency_ms,
                answered_by=r.answered_by,
                model_version=r.model_version,
                fallback_reason=r.fallback_reason,
            )
            for r in body.results
        ]
    elif isinstance(body, ResultUpdateBody):
        message.late_answers.append(
            LateAnswer(
                result_id=body.result_id,
                ts=when(body.window_end),
                stream=body.stream,
                window_seq=body.window_seq,
                edge_label=body.edge_label if body.edge_label is not None else NO_LABEL,
                edge_model_version=body.edge_model_version,
                fallback_reason=body.fallback_reason,
                cloud_label=body.cloud_label,
                cloud_score=body.cloud_score
                if body.cloud_score is None or math.isfinite(body.cloud_score)
                else None,
                cloud_model_version=body.cloud_model_version or "",
            )
        )
    elif isinstance(body, StatusBody):
        hardware: dict[str, JSONValue] = _clean_json(body.hardware)
        message.status = StatusUpdate(
            online=body.state == "online",
            ts=received_at,
            agent_version=body.agent_version,
            model_name=body.model_name,
            model_version=body.model_version,
            hardware=hardware or None,  # an empty report (e.g. the last will) keeps what is known
            fallback=_clean_json(body.fallback) if body.fallback is not None else None,
            name=body.name,
            tags=body.tags,
        )
        message.outbox_floor = body.outbox_floor
    elif isinstance(body, EventsBody):
        for e in body.events:
            data: dict[str, JSONValue] = _clean_json(e.data or {})
            message.events.append(
                StoredEvent(ts=when(e.ts), kind=e.kind, level=e.level, message=e.message, data=data)
            )
            ack = _ack_from_event(envelope.device_id, e.kind, received_at, e.message, e.data or {})
            if ack is not None:
                message.acks.append(ack)
            dropped = (e.data or {}).get("outbox_id")
            if e.kind == "sync.outbox_dropped" and isinstance(dropped, int) and not isinstance(dropped, bool):
                message.skipped_ids.append(dropped)  # never sent, by design: not a gap
    elif isinstance(body, DriftBody):
        counts = counts_of_body(body)
        # The bins live in ``counts`` only, not twice (and are not walked by _clean_json: ints).
        exclude: dict[str, Any] = {"drifted": True, "psi": True}
        if counts is not None:
            exclude["channels"] = {"__all__": {"bins"}}
            exclude["moments"] = True
        details: dict[str, JSONValue] = _clean_json(body.model_dump(mode="json", exclude=exclude))
        score = body.psi if body.psi is not None and math.isfinite(body.psi) else None
        message.drift.append(
            DriftItem(
                ts=when(body.window_end),
                drifted=body.drifted,
                score=score,
                details=details,
                model_name=body.model_name,
                model_version=body.model_version,
                counts=counts,
            )
        )
    return message


@dataclass
class IngestStats:
    """Counters of one controller process (thread-safe through ``lock``)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    malformed: int = 0
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    dropped_queue_full: int = 0
    batches: int = 0
    store_errors: int = 0
    lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lag_quantile(self, q: float) -> float | None:
        with self.lock:
            values = sorted(self.lag_ms)
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))]

    def snapshot(self, queue_depth: int) -> IngestStatsOut:
        return IngestStatsOut(
            received=self.received,
            stored=self.stored,
            duplicates=self.duplicates,
            malformed=self.malformed,
            dropped_queue_full=self.dropped_queue_full,
            queue_depth=queue_depth,
            batches=self.batches,
            lag_p50_ms=self.lag_quantile(0.50),
            lag_p99_ms=self.lag_quantile(0.99),
        )


_Item = tuple[str, bytes, float]


class IngestPipeline:
    """Queue plus one writer thread. ``submit`` is safe to call from any thread and never blocks."""

    def __init__(
        self,
        database: Database,
        config: IngestConfig,
        *,
        prefix: str = "edgefleet/v1",
        on_stored: Callable[[IngestOutcome], None] | None = None,
        on_committed: Callable[[list[AckRef]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``on_committed`` gets every de-duplicated message the database now holds (stored by this
        batch or earlier), after the commit: the end-to-end acknowledgements (controller/acks.py)."""
        self.database = database
        self.config = config
        self.prefix = prefix
        self.on_stored = on_stored
        self.on_committed = on_committed
        self._unstored: set[int] = set()
        self.clock = clock
        self.stats = IngestStats()
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=config.queue_max)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._thread: threading.Thread | None = None

    # --- producer side ----------------------------------------------------------------------------
    def submit(self, topic: str, payload: bytes, received_at: float | None = None) -> bool:
        with self._idle:
            self._in_flight += 1
        try:
            self._queue.put_nowait((topic, payload, self.clock() if received_at is None else received_at))
        except queue.Full:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
            with self.stats.lock:
                self.stats.dropped_queue_full += 1
            if self.stats.dropped_queue_full in (1, 10) or self.stats.dropped_queue_full % _LOG_EVERY == 0:
                log.error(
                    "ingest queue full (%d messages): dropped %d so far; the database cannot keep up",
                    self.config.queue_max,
                    self.stats.dropped_queue_full,
                )
            return False
        with self.stats.lock:
            self.stats.received += 1
        return True

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def snapshot(self) -> IngestStatsOut:
        return self.stats.snapshot(self.queue_depth())

    # --- life -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgefleet-ingest-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Store what is queued (up to ``timeout``), then end the writer thread."""
        self.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted message is stored or refused; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None:
                    return False
                self._idle.wait(remaining)
        return True

    # --- writer -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self._write(batch)

    def _collect(self) -> list[_Item]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.batch_max_delay_ms / 1000
        while len(batch) < self.config.batch_max_messages:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _decode(self, batch: list[_Item]) -> list[tuple[IngestMessage, AckRef | None]]:
        messages: list[tuple[IngestMessage, AckRef | None]] = []
        for topic, payload, received_at in batch:
            try:
                envelope = decode_message(
                    topic, payload, max_bytes=self.config.max_message_bytes, prefix=self.prefix
                )
                ref = None
                if envelope.message_id and envelope.kind in ACKNOWLEDGED_KINDS:
                    ref = AckRef(envelope.device_id, envelope.message_id, envelope.part, envelope.parts)
                messages.append((envelope_to_message(envelope, received_at=received_at), ref))
            except ProtocolError as exc:
                self._count_malformed(topic, exc.reason, exc.message)
            except Exception as exc:  # a bug in our mapping must not stop the ingest either
                self._count_malformed(topic, "unmappable", f"{type(exc).__name__}: {exc}")
        return messages

    def _count_malformed(self, topic: str, reason: str, message: str) -> None:
        with self.stats.lock:
            self.stats.malformed += 1
            count = self.stats.malformed_by_reason.get(reason, 0) + 1
            self.stats.malformed_by_reason[reason] = count
        if count <= _LOG_FIRST or count % _LOG_EVERY == 0:
            log.warning("dropped message on %s (%s, #%d of this reason): %s", topic, reason, count, message)

    def _write(self, batch: list[_Item]) -> None:
        try:
            decoded = self._decode(batch)
            messages = [m for m, _ in decoded]
            self._unstored = set()
            outcome = self._store(messages) if messages else IngestOutcome()
            refs = [ref for m, ref in decoded if ref is not None and id(m) not in self._unstored]
            if self.on_committed is not None and refs:
                try:
                    self.on_committed(refs)
                except Exception:
                    log.exception("ingest acknowledgement listener failed")
            stored_at = self.clock()
            with self.stats.lock:
                self.stats.stored += outcome.stored
                self.stats.duplicates += outcome.duplicates
                self.stats.batches += 1
                for m in messages:
                    # Retained status replayed on (re)subscribe would read as hours of lag: skip status.
                    if m.status is None:
                        sent = m.sent_at if m.sent_at is not None else m.received_at
                        self.stats.lag_ms.append((stored_at - sent) * 1000)
            if self.on_stored is not None and outcome.stored:
                try:
                    self.on_stored(outcome)
                except Exception:
                    log.exception("ingest change listener failed")
        finally:
            with self._idle:
                self._in_flight -= len(batch)
                self._idle.notify_all()

    def _store(self, messages: list[IngestMessage]) -> IngestOutcome:
        delay = 0.5
        while True:
            try:
                return self.database.ingest(messages, result_bucket_s=self.config.result_bucket_s)
            except Exception as exc:
                with self.stats.lock:
                    self.stats.store_errors += 1
                error = exc
            # One message the database refuses must not hold back the rest: store them one by one.
            outcome = self._store_one_by_one(messages)
            if outcome is not None:
                return outcome
            if self._stop.is_set():
                log.error(
                    "dropping a batch of %d messages at shutdown: database error %s", len(messages), error
                )
                self._unstored = {id(m) for m in messages}  # not acknowledged: the devices resend
                return IngestOutcome()
            log.error(
                "storing a batch of %d messages failed (%s); retrying in %.1fs", len(messages), error, delay
            )
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def _store_one_by_one(self, messages: list[IngestMessage]) -> IngestOutcome | None:
        """Store each message alone; None when every one failed (the database itself is down)."""
        total = IngestOutcome()
        failed: list[tuple[IngestMessage, Exception]] = []
        for message in messages:
            try:
                one = self.database.ingest([message], result_bucket_s=self.config.result_bucket_s)
            except Exception as exc:
                failed.append((message, exc))
                continue
            total.stored += one.stored
            total.duplicates += one.duplicates
            total.new_devices.extend(one.new_devices)
            total.changed_devices |= one.changed_devices
            total.status_changes.update(one.status_changes)
            total.acked_commands.extend(one.acked_commands)
        if failed and len(failed) == len(messages):
            return None
        self._unstored = {id(m) for m, _ in failed}
        for message, problem in failed:
            self._count_malformed(
                f"{self.prefix}/{message.device_id}/{message.kind}",
                "unstorable",
                f"message {message.message_id} refused by the database: {problem}",
            )
        return total
