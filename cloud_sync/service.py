"""``SyncService``: the agent's MQTT sync, running in one background thread.

It owns the connection life (own reconnect loop, exponential back-off with full jitter),
drains the store outbox (:mod:`.uplink`), dispatches downlink messages (:mod:`.downlink`),
keeps a retained ``status`` with an ``offline`` last will, and writes its state to a JSON file
that ``edgefleet sync status`` reads from another process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from edgefleet.cloud_sync.backoff import Backoff
from edgefleet.cloud_sync.client import LinkCallbacks, MqttLink, Will, build_tls_context
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.config import SyncConfig
from edgefleet.cloud_sync.downlink import Downlink, DownlinkCounters, Handler
from edgefleet.cloud_sync.protocol import AckBody, CommandBody, Envelope, StatusBody
from edgefleet.cloud_sync.topics import device_topic, validate_device_id
from edgefleet.cloud_sync.uplink import OutboxStore, Uplink, wire_bytes

__all__ = ["StatusProvider", "SyncService", "SyncState", "read_state_file"]

log = logging.getLogger(__name__)

StatusProvider = Callable[[], "Mapping[str, Any] | StatusBody"]
_STATE_EVERY_S = 5.0  # each rewrite of the state file costs a 4 KiB page of flash (docs/store.md)
_STOP_FLUSH_S = 2.0


class SyncState(BaseModel):
    """What ``state()`` returns and the state file holds."""

    device_id: str
    broker: str
    protocol: str
    running: bool = False
    connected: bool = False
    connected_since: float | None = None
    last_disconnect_at: float | None = None
    last_error: str | None = None
    connect_attempts: int = 0
    next_attempt_in_s: float | None = None
    backlog: dict[str, int] = Field(default_factory=dict)
    inflight: int = 0
    awaiting_ack: int = 0
    """Rows the broker took that the controller has not acknowledged yet (sync.end_to_end_ack)."""
    resent: int = 0
    """Rows sent again: no controller acknowledgement within sync.resend_after_s."""
    resent_no_subscribers: int = 0
    """Rows sent again because the broker said nobody was subscribed (MQTT 5 reason 0x10)."""
    no_subscribers: int = 0
    """Rows the broker acknowledged with reason 0x10 (resent with end_to_end_ack, else gone)."""
    controller_acks: int = 0
    """``ack`` downlink messages received from the controller."""
    bytes_sent_by_kind: dict[str, int] = Field(default_factory=dict)
    messages_sent_by_kind: dict[str, int] = Field(default_factory=dict)
    results_sent: int = 0
    last_ack_at: float | None = None
    last_acked_id: int | None = None
    refused_by_broker: int = 0
    dropped: int = 0
    downlink: dict[str, int] = Field(default_factory=dict)
    pid: int = Field(default_factory=os.getpid)
    updated_at: float = Field(default_factory=time.time)


def read_state_file(path: Path) -> SyncState | None:
    """The state a running (or the last) sync wrote, or None if there is none or it is unreadable."""
    try:
        return SyncState.model_validate_json(path.read_text())
    except (OSError, ValidationError, ValueError):
        return None


def _status_from(snapshot: Mapping[str, Any] | StatusBody) -> dict[str, Any]:
    if isinstance(snapshot, StatusBody):
        return snapshot.model_dump()
    model = snapshot.get("model")
    model = model if isinstance(model, Mapping) else {}
    hardware = snapshot.get("hardware")
    out: dict[str, Any] = {
        "agent_version": snapshot.get("agent_version") or snapshot.get("version"),
        "model_name": snapshot.get("model_name") or model.get("name") or model.get("model_name"),
        "model_version": snapshot.get("model_version") or model.get("version") or model.get("model_version"),
        "hardware": dict(hardware) if isinstance(hardware, Mapping) else {},
        "uptime_s": snapshot.get("uptime_s"),
        "fallback": snapshot.get("fallback"),
        "name": snapshot.get("device_name"),
        "tags": snapshot.get("device_tags"),
    }
    if "hostname" in snapshot and "hostname" not in out["hardware"]:
        out["hardware"]["hostname"] = snapshot["hostname"]
    return {k: v for k, v in out.items() if v is not None}


class SyncService:
    """Runs the sync in a daemon thread. ``start()`` never waits for the broker."""

    def __init__(
        self,
        store: OutboxStore,
        config: SyncConfig,
        device_id: str,
        *,
        status_provider: StatusProvider | None = None,
        command_handler: Handler | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.device_id = validate_device_id(device_id)
        self.status_provider = status_provider
        self.command_handler = command_handler
        store_path = getattr(store, "path", None) or getattr(getattr(store, "config", None), "path", None)
        if state_path is None and (config.state_file is not None or store_path is not None):
            state_path = config.state_path(Path(store_path or "store.db"))
        self.state_path = state_path
        self.uplink = Uplink(store, config, self.device_id)
        self.downlink = Downlink(
            store, self.device_id, prefix=config.topic_prefix, max_bytes=config.max_message_bytes
        )
        self.downlink.register("cmd", self._on_command)
        self.downlink.register("ack", self._on_controller_ack)
        self._tls = build_tls_context(config.tls) if config.tls is not None else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: MqttLink | None = None
        self._status_due = True
        self._backlog: dict[str, int] = {}
        self._state = SyncState(
            device_id=self.device_id, broker=f"{config.host}:{config.port}", protocol=config.protocol
        )
        self._started_at = time.time()

    # ------------------------------------------------------------------ public

    def register_handler(self, kind: str, handler: Handler) -> None:
        """Handle a downlink kind other than ``cmd`` (``config``, ``ota/offer``, ``infer/response``)."""
        self.downlink.register(kind, handler)

    def publish_live(self, topic: str, payload: bytes) -> str | None:
        """Publish now, bypassing the outbox (cloud fallback requests, which have their own deadline).

        QoS 0: a lost request is covered by the caller's timeout, and its mid never mixes with the
        outbox's acknowledgements. None once handed to the connection, else why not.
        """
        link = self._link
        if link is None or not link.alive:
            return f"not connected to the broker at {self.config.host}:{self.config.port}"
        if link.publish(topic, payload, qos=0) is None:
            return link.error or "the publish failed"
        return None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        with self._lock:
            self._state.running = True
        self._thread = threading.Thread(target=self._run, name=f"sync-{self.device_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Publish ``offline``, flush acknowledgements, disconnect and join the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look at the outbox now rather than at the next drain interval."""
        self._wake.set()

    def state(self) -> SyncState:
        """A snapshot; counters are live, the backlog is at most ~1 s old."""
        with self._lock:
            state = self._state.model_copy(deep=True)
        self._copy_uplink_counters(state)
        return state

    def _copy_uplink_counters(self, state: SyncState) -> None:
        counters = self.uplink.counters
        state.inflight = self.uplink.inflight
        awaiting = self.uplink.awaiting
        state.awaiting_ack = len(awaiting)
        state.resent = awaiting.resent
        state.resent_no_subscribers = awaiting.retried_no_subscribers
        state.controller_acks = awaiting.acks_received
        state.no_subscribers = self.uplink.counters.no_subscribers
        state.bytes_sent_by_kind = dict(counters.bytes_sent_by_kind)
        state.messages_sent_by_kind = dict(counters.messages_sent_by_kind)
        state.results_sent = counters.results_sent
        state.last_ack_at = counters.last_ack_at
        state.last_acked_id = counters.last_acked_id

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        next_attempt = 0.0
        next_state = 0.0
        next_peek = 0.0
        next_status = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_state:
                    self._refresh_state()
                    next_state = now + _STATE_EVERY_S
                link = self._link
                if link is None or not link.alive:
                    if link is not None:
                        self._lost(link)
                        next_attempt = now + backoff.next_delay()
                    if now < next_attempt:
                        with self._lock:
                            self._state.next_attempt_in_s = round(next_attempt - now, 3)
                        self._wake.wait(min(next_attempt - now, 0.25))
                        self._wake.clear()
                        continue
                    if self._connect():
                        backoff.reset()
                        next_peek = next_status = 0.0
                    else:
                        next_attempt = time.monotonic() + backoff.next_delay()
                    continue
                if self._status_due or now >= next_status:
                    self._publish_status(link)
                    if now >= next_status:
                        self._record_metrics()
                    next_status = now + self.config.status_interval_s
                sent = 0
                if now >= next_peek or self._wake.is_set():
                    self._wake.clear()
                    sent = self.uplink.pump(link.send)
                    if sent == 0 and self.uplink.inflight == 0:
                        next_peek = now + max(self.config.drain_interval_s, self.uplink.budget_wait())
                busy = sent > 0 or self.uplink.inflight > 0
                link.loop(0.0 if sent else 0.01 if busy else min(0.1, max(0.0, next_peek - now)))
                self.uplink.maybe_flush_acks()
                if self.uplink.waiting_since_progress() > self.config.ack_timeout_s:
                    link.error = f"no acknowledgement for {self.config.ack_timeout_s}s; reconnecting"
                    link.close()
                elif self.uplink._failed and self.uplink.inflight == 0:
                    link.error = self.uplink.counters.last_refusal
                    link.close()
        except Exception:  # keep the agent alive; the failure is visible in the state
            log.exception("sync thread failed")
            with self._lock:
                self._state.last_error = "sync thread failed; see the agent log"
        finally:
            self._shutdown()

    def _make_link(self) -> MqttLink:
        will = Will(
            topic=device_topic(self.device_id, "status", prefix=self.config.topic_prefix),
            payload=self._status_payload("offline"),
        )
        callbacks = LinkCallbacks(on_ack=self.uplink.on_ack, on_message=self.downlink.on_message)
        client_id = self.config.client_id or self.device_id
        return MqttLink(self.config, client_id, callbacks, will=will, tls_context=self._tls)

    def _connect(self) -> bool:
        link = self._make_link()
        with self._lock:
            self._state.connect_attempts += 1
        if not link.open():
            log.info("sync: %s", link.error)
            with self._lock:
                self._state.last_error = link.error
            return False
        self._link = link
        # One slot stays free for the status publishes that bypass the uplink window.
        limit = link.receive_maximum - 1 if link.receive_maximum is not None else self.config.max_inflight
        self.uplink.window = max(1, min(self.config.max_inflight, limit))
        link.subscribe(self.downlink.topics(), qos=1)
        self._status_due = True
        log.info("sync connected to %s:%d", self.config.host, self.config.port)
        with self._lock:
            self._state.connected = True
            self._state.connected_since = time.time()
            self._state.next_attempt_in_s = None
            self._state.last_error = None  # the link is back; the last disconnect time stays
        self._refresh_state()
        return True

    def _lost(self, link: MqttLink) -> None:
        log.info("sync disconnected: %s", link.error)
        link.close()
        self._link = None
        self.uplink.reset()
        with self._lock:
            self._state.connected = False
            self._state.last_disconnect_at = time.time()
            self._state.last_error = link.error
        self._refresh_state()

    def _status_payload(self, state: str) -> bytes:
        fields: dict[str, Any] = {}
        if self.status_provider is not None and state == "online":
            try:
                fields = _status_from(self.status_provider())
            except Exception as exc:  # a broken provider must not stop the status going out
                log.warning("status provider failed: %s", exc)
        counters = self.uplink.counters
        fields.update(
            state=state,
            backlog=dict(self._backlog),
            bytes_sent_by_kind=dict(counters.bytes_sent_by_kind),
        )
        floor = self._outbox_floor()
        if floor is not None:
            fields["outbox_floor"] = floor
        fields.setdefault("uptime_s", time.time() - self._started_at)
        try:
            body = StatusBody.model_validate(fields)
        except ValidationError as exc:
            log.warning("status provider returned fields outside StatusBody: %s", exc)
            body = StatusBody(state=fields["state"], backlog=fields["backlog"], outbox_floor=floor)
        envelope = Envelope(
            message_id=0, device_id=self.device_id, kind="status", created_at=time.time(), body=body
        )
        return encode_message(envelope.model_copy(update={"sent_at": time.time()}))

    def _publish_status(self, link: MqttLink) -> None:
        self._status_due = False
        topic = device_topic(self.device_id, "status", prefix=self.config.topic_prefix)
        payload = self._status_payload("online")
        if link.publish(topic, payload, qos=1, retain=True) is not None:
            sent = self.uplink.counters.bytes_sent_by_kind
            sent["status"] = sent.get("status", 0) + wire_bytes(
                topic, len(payload), v5=self.config.protocol == "mqtt5"
            )

    def _record_metrics(self) -> None:
        """Bytes sent and backlog per kind as telemetry samples (they travel like any metric)."""
        write = getattr(self.store, "write_metrics", None)
        if write is None:
            return
        from edgefleet.agent.store import MetricSample

        now = time.time()
        sent = dict(self.uplink.counters.bytes_sent_by_kind)
        samples = [
            MetricSample(ts=now, name="sync_bytes_sent_total", value=float(v), labels={"kind": k})
            for k, v in sorted(sent.items())
        ]
        samples += [
            MetricSample(ts=now, name="sync_backlog", value=float(v), labels={"kind": k})
            for k, v in sorted(self._backlog.items())
        ]
        samples.append(MetricSample(ts=now, name="sync_connected", value=1.0 if self._link else 0.0))
        try:
            write(samples)
        except Exception as exc:  # metrics are best effort; the sync goes on
            log.warning("could not record sync metrics: %s", exc)

    def _outbox_floor(self) -> int | None:
        """Lowest outbox id the store still holds: the controller's gap detection needs it."""
        floor = getattr(self.store, "outbox_floor", None)
        if floor is None:
            return None
        try:
            return int(floor())
        except Exception as exc:  # store busy or closing: the status goes out without it
            log.debug("outbox_floor failed: %s", exc)
            return None

    def _on_controller_ack(self, envelope: Envelope) -> None:
        if isinstance(envelope.body, AckBody) and self.uplink.on_controller_ack(envelope.body):
            self._wake.set()  # room in the awaiting window: look at the outbox again

    def _on_command(self, envelope: Envelope) -> None:
        body: object = envelope.body
        if isinstance(body, CommandBody) and body.expires_at is not None and time.time() > body.expires_at:
            body = None  # expired: not run; the command handler reports it expired
        if isinstance(body, CommandBody) and body.command in ("report_status", "ping"):
            self._status_due = True
        if isinstance(body, CommandBody) and body.command == "flush_outbox":
            self._wake.set()
        if self.command_handler is not None:
            self.command_handler(envelope)

    def _refresh_state(self) -> None:
        try:
            self._backlog = dict(self.store.outbox_backlog())
        except Exception as exc:  # store busy or closing: keep the last figures
            log.debug("outbox_backlog failed: %s", exc)
        counters = self.uplink.counters
        down: DownlinkCounters = self.downlink.counters
        with self._lock:
            st = self._state
            st.backlog = dict(self._backlog)
            self._copy_uplink_counters(st)
            st.refused_by_broker = counters.refused
            st.dropped = counters.dropped
            st.downlink = {
                "received": down.received,
                "handled": down.handled,
                "refused": down.refused,
                "failed": down.failed,
                "duplicates": down.duplicates,
            }
            st.updated_at = time.time()
            snapshot = st.model_dump(mode="json")
        if self.state_path is not None:
            self._write_state(snapshot)

    def _write_state(self, snapshot: dict[str, Any]) -> None:
        assert self.state_path is not None
        tmp = self.state_path.with_name(self.state_path.name + f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(snapshot, indent=1, sort_keys=True))
            os.replace(tmp, self.state_path)
        except OSError as exc:
            log.debug("cannot write sync state %s: %s", self.state_path, exc)

    def _shutdown(self) -> None:
        link = self._link
        if link is not None and link.alive:
            topic = device_topic(self.device_id, "status", prefix=self.config.topic_prefix)
            link.publish(topic, self._status_payload("offline"), qos=1, retain=True)
            deadline = time.monotonic() + _STOP_FLUSH_S
            while link.alive and self.uplink.inflight and time.monotonic() < deadline:
                link.loop(0.02)
            link.loop(0.02)
            try:
                self.uplink.flush_acks()
            except Exception as exc:
                log.warning("could not record the last acknowledgements: %s", exc)
            link.close()
        self._link = None
        with self._lock:
            self._state.running = False
            self._state.connected = False
        self._refresh_state()
