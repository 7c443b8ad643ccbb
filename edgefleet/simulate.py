"""A fleet of simulated devices in one process, for load tests and demos.

Each device is a real MQTT connection speaking the real protocol: a retained ``online``
status with an ``offline`` last will, telemetry every ``telemetry_interval`` seconds and
result batches at ``rate`` results per second. All connections are driven from one thread
through paho's external-loop socket callbacks, so a thousand devices cost a thousand
sockets, not a thousand threads.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet import __version__
from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import (
    CommandBody,
    EventItem,
    EventsBody,
    MetricPoint,
    ResultItem,
    ResultsBody,
    StatusBody,
    TelemetryBody,
    make_envelope,
)
from edgefleet.cloud_sync.topics import DEFAULT_PREFIX, MessageKind, device_topic
from edgefleet.errors import EdgefleetError, ProtocolError

__all__ = ["FleetSimulator", "SimulatorStats"]

log = logging.getLogger(__name__)

LABELS = ("Standing", "Walking", "Running", "Badminton")
MODEL_NAME = "basicmotions-sim"
MODEL_VERSION = "1.0.0"


@dataclass
class SimulatorStats:
    devices: int = 0
    connected: int = 0
    messages_sent: int = 0
    results_sent: int = 0
    bytes_sent: int = 0
    commands_received: int = 0
    publish_errors: int = 0


@dataclass
class _Device:
    device_id: str
    client: mqtt.Client
    rng: random.Random
    message_id: int
    activity: int
    latency_base_ms: float
    started: float = field(default_factory=time.time)
    results_due: float = 0.0
    connected: bool = False

    def next_id(self) -> int:
        self.message_id += 1
        return self.message_id


class FleetSimulator:
    """``devices`` simulated agents publishing to ``host:port`` until :meth:`stop`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        devices: int = 10,
        rate: float = 1.0,
        telemetry_interval: float = 1.0,
        protocol: str = "mqtt5",
        prefix: str = DEFAULT_PREFIX,
        id_prefix: str = "sim",
        fallback_share: float = 0.05,
        seed: int = 0,
        on_tick: Callable[[SimulatorStats], None] | None = None,
    ) -> None:
        if devices < 1:
            raise EdgefleetError(f"--devices must be at least 1, got {devices}", hint="try --devices 10")
        if rate < 0 or not math.isfinite(rate):
            raise EdgefleetError(f"--rate must be a finite number >= 0, got {rate}", hint="try --rate 1")
        if protocol not in {"mqtt5", "mqtt311"}:
            raise EdgefleetError(f"protocol must be 'mqtt5' or 'mqtt311', got {protocol!r}")
        self.host, self.port = host, port
        self.rate = rate
        self.telemetry_interval = telemetry_interval
        self.prefix = prefix
        self.fallback_share = fallback_share
        self.protocol = mqtt.MQTTv5 if protocol == "mqtt5" else mqtt.MQTTv311
        self.stats = SimulatorStats(devices=devices)
        self.on_tick = on_tick
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        rng = random.Random(seed)
        # Message ids start from the wall clock so a re-run is never mistaken for a resend.
        first_id = int(time.time() * 1000)
        self._devices = [
            self._make_device(f"{id_prefix}-{index:04d}", random.Random(rng.random()), first_id)
            for index in range(devices)
        ]

    # ------------------------------------------------------------------ set-up

    def _make_device(self, device_id: str, rng: random.Random, first_id: int) -> _Device:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=device_id,
            protocol=self.protocol,
        )
        device = _Device(
            device_id=device_id,
            client=client,
            rng=rng,
            message_id=first_id,
            activity=rng.randrange(len(LABELS)),
            latency_base_ms=rng.uniform(3.0, 12.0),
        )
        will = make_envelope(device_id, "status", StatusBody(state="offline"))
        client.will_set(self._topic(device_id, "status"), encode_message(will), qos=1, retain=True)
        client.user_data_set(device)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return device

    def _topic(self, device_id: str, kind: MessageKind) -> str:
        return device_topic(device_id, kind, prefix=self.prefix)

    # ------------------------------------------------------------------ paho callbacks

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(sock, selectors.EVENT_READ, client)

    def _on_connect(self, client: mqtt.Client, device: _Device, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("%s: broker refused the connection: %s", device.device_id, reason)
            return
        device.connected = True
        self.stats.connected += 1
        client.subscribe(self._topic(device.device_id, "cmd"), qos=1)
        self._publish_status(device)

    def _on_disconnect(
        self, client: mqtt.Client, device: _Device, flags: Any, reason: Any, props: Any
    ) -> None:
        if device.connected:
            device.connected = False
            self.stats.connected -= 1

    def _on_message(self, client: mqtt.Client, device: _Device, message: mqtt.MQTTMessage) -> None:
        try:
            envelope = decode_message(message.topic, bytes(message.payload), prefix=self.prefix)
        except ProtocolError as exc:
            self._publish_events(device, "command.refused", f"malformed command: {exc.message}", "warning")
            return
        body = envelope.body
        if not isinstance(body, CommandBody):
            return
        self.stats.commands_received += 1
        # Like the real agent (agent/commands.py): a command finished at once is reported done.
        self._publish_events(
            device, "command.done", f"{body.command} done", "info", {"command_id": body.command_id}
        )
        if body.command == "report_status":
            self._publish_status(device)

    # ------------------------------------------------------------------ traffic

    def _publish(self, device: _Device, kind: MessageKind, body: Any, *, retain: bool = False) -> None:
        message_id = 0 if kind == "status" else device.next_id()
        payload = encode_message(make_envelope(device.device_id, kind, body, message_id=message_id))
        info = device.client.publish(self._topic(device.device_id, kind), payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.stats.publish_errors += 1
            return
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(payload)

    def _publish_status(self, device: _Device) -> None:
        body = StatusBody(
            state="online",
            agent_version=f"{__version__}+sim",
            model_name=MODEL_NAME,
            model_version=MODEL_VERSION,
            hardware={"machine": "simulated", "cpu_count": 4},
            uptime_s=time.time() - device.started,
        )
        self._publish(device, "status", body, retain=True)

    def _publish_events(
        self, device: _Device, kind: str, message: str, level: str, data: dict[str, Any] | None = None
    ) -> None:
        event = EventItem.model_validate(
            {"ts": time.time(), "kind": kind, "level": level, "message": message, "data": data}
        )
        self._publish(device, "events", EventsBody(events=[event]))

    def _publish_telemetry(self, device: _Device, now: float) -> None:
        rng = device.rng
        latency = device.latency_base_ms * rng.uniform(0.9, 1.3)
        values = {
            "throughput_windows_per_s": self.rate * rng.uniform(0.95, 1.05),
            "inference_latency_ms_p50": latency,
            "inference_latency_ms_p95": latency * 1.6,
            "inference_latency_ms_p99": latency * 2.2,
            "cpu_percent": rng.uniform(10, 60),
            "memory_rss_bytes": rng.uniform(60e6, 90e6),
            "temperature_c": rng.uniform(45, 70),
            "fallback_share": self.fallback_share * rng.uniform(0.5, 1.5),
            "store_size_bytes": 4e6 + (now - device.started) * 500,
            "process_bytes_written_per_hour": rng.uniform(20e6, 40e6),
        }
        samples = [MetricPoint(ts=now, name=name, value=value) for name, value in values.items()]
        self._publish(device, "telemetry", TelemetryBody(samples=samples))

    def _publish_results(self, device: _Device, now: float, count: int) -> None:
        rng = device.rng
        if rng.random() < 0.05:
            device.activity = rng.randrange(len(LABELS))
        items = []
        for offset in range(count):
            end = now - (count - offset - 1) / max(self.rate, 1e-9)
            by_cloud = rng.random() < self.fallback_share
            items.append(
                ResultItem(
                    stream="imu",
                    window_start=end - 5.0,
                    window_end=end,
                    model_name=MODEL_NAME,
                    model_version=MODEL_VERSION,
                    label=LABELS[device.activity],
                    score=rng.uniform(0.55, 0.99),
                    latency_ms=device.latency_base_ms * rng.uniform(0.8, 1.5),
                    answered_by="cloud" if by_cloud else "edge",
                    fallback_reason="low_confidence" if by_cloud else None,
                )
            )
        self._publish(device, "results", ResultsBody(results=items))
        self.stats.results_sent += count

    # ------------------------------------------------------------------ loop

    def connect_all(self) -> None:
        for device in self._devices:
            try:
                device.client.connect(self.host, self.port, keepalive=30)
            except OSError as exc:
                raise EdgefleetError(
                    f"cannot reach the broker at {self.host}:{self.port}: {exc}",
                    hint="start a broker (mosquitto -p PORT) or pass --host/--port",
                ) from None
            sock = device.client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration: float | None = None) -> SimulatorStats:
        """Connect every device and publish until ``duration`` seconds pass or :meth:`stop`."""
        self.connect_all()
        start = time.monotonic()
        next_tick = start
        spread = self.telemetry_interval / len(self._devices)
        for index, device in enumerate(self._devices):
            # Spread devices over the interval so the broker sees a steady load, not bursts.
            device.results_due = start + index * spread
        last_misc = start
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if duration is not None and now - start >= duration:
                    break
                if now >= next_tick:
                    self._tick(now)
                    next_tick = now + min(0.05, spread * 10)
                for key, events in self._selector.select(timeout=0.01):
                    client: mqtt.Client = key.data
                    if events & selectors.EVENT_READ:
                        client.loop_read()
                    if events & selectors.EVENT_WRITE:
                        client.loop_write()
                if now - last_misc >= 1.0:
                    for device in self._devices:
                        device.client.loop_misc()
                    last_misc = now
                    if self.on_tick:
                        self.on_tick(self.stats)
        finally:
            self._shutdown()
        return self.stats

    def _tick(self, now: float) -> None:
        wall = time.time()
        for device in self._devices:
            if not device.connected or now < device.results_due:
                continue
            device.results_due += self.telemetry_interval
            self._publish_telemetry(device, wall)
            count = self._results_this_interval(device)
            if count:
                self._publish_results(device, wall, count)

    def _results_this_interval(self, device: _Device) -> int:
        expected = self.rate * self.telemetry_interval
        whole = int(expected)
        return whole + (1 if device.rng.random() < expected - whole else 0)

    def _shutdown(self) -> None:
        for device in self._devices:
            if device.connected:
                # A clean stop is not a crash: say offline ourselves, the will is only for crashes.
                self._publish(device, "status", StatusBody(state="offline"), retain=True)
                device.client.loop_write()
            device.client.disconnect()
            device.client.loop_write()
        self._selector.close()
