"""Cloud inference workers: answer devices' ``infer/request`` messages with the cloud bundle.

Each :class:`InferenceWorker` has its own MQTT client and model session. Under MQTT 5 the workers
subscribe through one shared subscription (``$share/<group>/<prefix>/+/infer/request``), so the
broker hands each request to one worker and N workers split the load; under MQTT 3.1.1 there are
no shared subscriptions, so run one worker (each would answer every request).

Requests wait in a worker's queue until :func:`edgefleet.runtime.batcher.collate` (the runtime's
batching policy) releases them: ``max_batch_size`` pending, or the oldest has waited
``max_wait_ms``. The answer goes to the requesting device's own ``infer/response`` topic, never to
a topic the request names, and carries the request id in its body; under MQTT 5 it also echoes the
request's correlation data. A request that cannot be used is refused, counted by reason and, when
its device and id are known, answered with ``error`` set; nothing a device sends stops a worker.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgefleet.cloud_sync.topics import controller_filters
from edgefleet.controller.config import MqttConfig
from edgefleet.controller.hard_examples import HardExample
from edgefleet.controller.inference.config import InferenceConfig
from edgefleet.controller.inference.requests import (
    Job,
    RequestRefusedError,
    parse_request,
    response_payload,
    response_topic,
)
from edgefleet.errors import EdgefleetError
from edgefleet.runtime.batcher import collate
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.windows import Window

__all__ = ["InferencePool", "InferenceWorker", "OnAnswered", "WorkerStats", "worker_mqtt"]

OnAnswered = Callable[[list[HardExample]], None]
"""Receives each answered batch as hard examples (after the answers went out); must not block."""

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """Counters of one worker (or, from :meth:`InferencePool.stats`, of all of them)."""

    received: int = 0
    answered: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    model_errors: int = 0
    batches: int = 0

    def add(self, other: WorkerStats) -> None:
        self.received += other.received
        self.answered += other.answered
        self.refused.update(other.refused)
        self.model_errors += other.model_errors
        self.batches += other.batches


class InferenceWorker:
    """One MQTT client + one model session + one batching thread."""

    def __init__(
        self,
        mqtt_config: MqttConfig,
        config: InferenceConfig,
        bundle: Bundle,
        *,
        name: str,
        on_answered: OnAnswered | None = None,
    ) -> None:
        self.on_answered = on_answered
        self.mqtt_config = mqtt_config
        self.config = config
        self.bundle = bundle
        self.name = name
        prep = bundle.manifest.preprocessing
        self.window_shape = (prep.window_length, prep.channels)
        self.prefix = mqtt_config.topic_prefix
        self._v5 = mqtt_config.protocol == "mqtt5"
        group = config.share_group if self._v5 else None
        self.filters = controller_filters(group=group, kinds=("infer/request",), prefix=self.prefix)
        self.model = bundle.open_model(threads=config.threads)
        self.stats = WorkerStats()
        self.last_error: str | None = None
        self._pending: list[tuple[Window, Job]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        client_id = f"edgefleet-infer-{socket.gethostname()}-{os.getpid()}-{name}-{secrets.token_hex(3)}"
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
        )
        if mqtt_config.username:
            self.client.username_pw_set(mqtt_config.username, mqtt_config.password())
        if mqtt_config.tls.enabled:
            tls = mqtt_config.tls
            self.client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            self.client.tls_insecure_set(tls.insecure)
        # paho walks every in-flight message on each PUBACK (_update_inflight): with 1000 allowed in
        # flight a flood made that walk the worker's largest single cost. 64 keeps the pipe full
        # on a local broker (a PUBACK takes well under a millisecond) at a fifteenth of the walk.
        self.client.max_inflight_messages_set(64)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # --- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retried on failure) and start the batching thread."""
        self._thread = threading.Thread(target=self._serve, name=f"edgefleet-infer-{self.name}", daemon=True)
        self._thread.start()
        cfg = self.mqtt_config
        if self._v5:
            self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=True)
        else:
            self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self.client.loop_start()

    def wait_ready(self, timeout: float) -> bool:
        """True once connected and subscribed."""
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        """Answer what is pending, then disconnect."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.client.disconnect()
        self.client.loop_stop()
        self.model.close()

    # --- paho callbacks (network thread) --------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("inference worker %s: %s", self.name, self.last_error)
            return
        if self._v5:
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])
        else:
            client.subscribe([(f, 1) for f in self.filters])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self.last_error = f"broker refused subscriptions {self.filters}: {', '.join(refused)}"
            log.error("inference worker %s: %s", self.name, self.last_error)
            return
        log.info("inference worker %s subscribed to %s", self.name, self.filters)
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._subscribed.clear()
        if reason.is_failure:
            self.last_error = f"disconnected: {reason}"
            log.warning("inference worker %s lost the broker (%s); reconnecting", self.name, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._accept(message)
        except Exception:  # an exception here would end paho's network thread
            log.exception("inference worker %s: unexpected failure on %s", self.name, message.topic)

    def _accept(self, message: mqtt.MQTTMessage) -> None:
        correlation: bytes | None = None
        props = getattr(message, "properties", None)
        if props is not None and hasattr(props, "CorrelationData"):
            correlation = bytes(props.CorrelationData)
        with self._cond:
            self.stats.received += 1
        try:
            job = parse_request(
                message.topic,
                bytes(message.payload),
                window_shape=self.window_shape,
                received_at=time.monotonic(),
                prefix=self.prefix,
                max_bytes=self.config.max_request_bytes,
                correlation_data=correlation,
            )
        except RequestRefusedError as refused:
            with self._cond:
                self.stats.refused[refused.reason] += 1
            log.warning("inference worker %s refused a request on %s: %s", self.name, message.topic, refused)
            if refused.device_id and refused.request_id:
                self._publish(refused.device_id, refused.request_id, correlation, error=str(refused))
            return
        window = Window(
            stream=job.device_id, seq=0, start_ts=0.0, end_ts=0.0, data=job.window, ready_at=job.received_at
        )
        with self._cond:
            self._pending.append((window, job))
            # Wake the batching thread only when it has something new to decide: the first request
            # (its max_wait_ms starts) or a full batch. A wake-up per request cost a GIL hand-over
            # and a collate() per message under load, for nothing.
            if len(self._pending) == 1 or len(self._pending) >= self.config.max_batch_size:
                self._cond.notify_all()

    # --- batching thread ------------------------------------------------------------------------
    def _serve(self) -> None:
        timeout = self.config.max_wait_ms / 1000.0
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    windows = [w for w, _ in self._pending]
                    due, _ = collate(
                        windows, now=now, max_batch_size=self.config.max_batch_size, batch_timeout=timeout
                    )
                    if self._stopping and not due:
                        due = windows[: self.config.max_batch_size]
                    if due:
                        chosen = {id(w) for w in due}
                        jobs = [j for w, j in self._pending if id(w) in chosen]
                        self._pending = [(w, j) for w, j in self._pending if id(w) not in chosen]
                        break
                    if self._stopping:
                        return
                    oldest = min((w.ready_at for w in windows), default=None)
                    self._cond.wait(None if oldest is None else max(0.0, oldest + timeout - now))
            self._answer(jobs)

    def _answer(self, jobs: list[Job]) -> None:
        manifest = self.bundle.manifest
        try:
            x = self.bundle.preprocess(np.stack([j.window for j in jobs]))
            answers = self.bundle.interpret_batch(self.model.predict(x))
        except Exception as exc:  # a model failure answers this batch with an error, never kills the worker
            with self._cond:
                self.stats.model_errors += 1
            log.exception("inference worker %s: the model failed on a batch of %d", self.name, len(jobs))
            for job in jobs:
                self._publish(
                    job.device_id, job.request_id, job.correlation_data, error=f"cloud model failed: {exc}"
                )
            return
        for i, job in enumerate(jobs):
            self._publish(
                job.device_id,
                job.request_id,
                job.correlation_data,
                model_name=manifest.name,
                model_version=manifest.version,
                label=answers.labels[i],
                score=answers.scores[i],
                outputs=[float(v) for v in answers.values[i]],
            )
        with self._cond:
            self.stats.batches += 1
            self.stats.answered += len(jobs)
        if self.on_answered is not None:
            try:
                self.on_answered(self._hard_examples(jobs, answers.labels, answers.scores))
            except Exception:  # keeping examples is secondary: answering goes on
                log.exception("inference worker %s: could not hand over hard examples", self.name)

    def _hard_examples(
        self, jobs: list[Job], labels: list[str | None], scores: list[float | None]
    ) -> list[HardExample]:
        manifest = self.bundle.manifest
        now = time.time()
        out = []
        for job, label, score in zip(jobs, labels, scores, strict=True):
            request = job.request
            out.append(
                HardExample(
                    device_id=job.device_id,
                    request_id=job.request_id,
                    answered_at=now,
                    stream=request.stream if request else "",
                    window_start=request.window_start if request else 0.0,
                    window_end=request.window_end if request else 0.0,
                    fallback_reason=request.fallback_reason if request else "",
                    edge_label=request.edge_label if request else None,
                    edge_score=request.edge_score if request else None,
                    cloud_label=label if label is not None else "",
                    cloud_score=score,
                    model_name=manifest.name,
                    model_version=manifest.version,
                    shape=self.window_shape,
                    data=np.ascontiguousarray(job.window, dtype="<f4").tobytes(),
                )
            )
        return out

    def _publish(self, device_id: str, request_id: str, correlation: bytes | None, **answer: Any) -> None:
        payload = response_payload(device_id, request_id, **answer)
        properties: Properties | None = None
        if self._v5 and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        info = self.client.publish(
            response_topic(device_id, self.prefix), payload, qos=1, properties=properties
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning(
                "inference worker %s could not answer %s: %s",
                self.name,
                request_id,
                mqtt.error_string(info.rc),
            )


def worker_mqtt(mqtt_config: MqttConfig, config: InferenceConfig, index: int) -> MqttConfig:
    """Worker ``index``'s MQTT settings: its own user name from ``inference.usernames`` when set."""
    if not config.usernames:
        return mqtt_config
    return mqtt_config.model_copy(
        update={
            "username": config.usernames[index],
            "password_env": config.password_env or mqtt_config.password_env,
        }
    )


class InferencePool:
    """``config.workers`` workers over one loaded bundle."""

    def __init__(
        self, mqtt_config: MqttConfig, config: InferenceConfig, *, on_answered: OnAnswered | None = None
    ) -> None:
        if config.bundle is None:
            raise EdgefleetError(
                "no cloud bundle configured", hint="set inference.bundle in the controller config"
            )
        self.bundle = load_bundle(config.bundle)
        self.workers = [
            InferenceWorker(
                worker_mqtt(mqtt_config, config, i), config, self.bundle, name=str(i), on_answered=on_answered
            )
            for i in range(config.workers)
        ]
        if mqtt_config.username and not config.usernames and config.workers > 1:
            log.warning(
                "%d inference workers all log in as mqtt.username %r: on a broker that makes the user"
                " name the client id (use_username_as_clientid, the shipped deploy/mosquitto config)"
                " they replace each other; set inference.usernames, one per worker",
                config.workers,
                mqtt_config.username,
            )
        if mqtt_config.protocol == "mqtt311" and config.workers > 1:
            log.warning(
                "inference.workers = %d under MQTT 3.1.1: without shared subscriptions every worker"
                ' answers every request; use protocol = "mqtt5" or one worker',
                config.workers,
            )

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(w.wait_ready(max(0.0, deadline - time.monotonic())) for w in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def stats(self) -> WorkerStats:
        total = WorkerStats()
        for worker in self.workers:
            with worker._cond:
                total.add(worker.stats)
        return total
