"""``mqtt``: samples published by sensor nodes to a topic on a (usually local) MQTT broker.

Payloads use the same formats as the datagram sources (:mod:`.framing`). The client
connects in the background and reconnects by itself with exponential back-off between
``reconnect_min_s`` and ``reconnect_max_s``, resubscribing on every connect, so a broker
restart costs the samples published while it was down and nothing else.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field, SecretStr, model_validator

from edgefleet.agent.sources.base import Sink
from edgefleet.agent.sources.framing import FrameDecoder
from edgefleet.agent.sources.hub import HubSource, SourceHub
from edgefleet.agent.sources.udp import FramedSourceConfig

__all__ = ["MqttSource", "MqttSourceConfig"]


class MqttSourceConfig(FramedSourceConfig):
    type: Literal["mqtt"] = "mqtt"
    topic: str = Field(min_length=1, description="topic filter to subscribe to; '+' and '#' allowed")
    host: str = Field(default="127.0.0.1", description="broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    qos: Literal[0, 1, 2] = Field(default=0, description="subscription QoS")
    client_id: str | None = Field(default=None, description="defaults to edgefleet-src-<name>-<random>")
    username: str | None = Field(default=None, description="broker user name")
    password: SecretStr | None = Field(default=None, description="broker password; never logged or shown")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive")
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=60, description="first reconnect delay (whole seconds)"
    )
    reconnect_max_s: float = Field(
        default=30.0, gt=0, le=3600, description="reconnect delay doubles up to this"
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttSourceConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(
                f"reconnect_max_s ({self.reconnect_max_s}) must be >= "
                f"reconnect_min_s ({self.reconnect_min_s})"
            )
        return self


class MqttSource(HubSource[MqttSourceConfig]):
    """Subscribes on paho's own network loop; the hub only opens and shuts it down."""

    type_key = "mqtt"
    config_model = MqttSourceConfig

    def __init__(self, config: MqttSourceConfig, sink: Sink) -> None:
        super().__init__(config, sink)
        self._decoder = FrameDecoder(config.channels, config.format, timestamped=config.timestamped)
        self._connected = False
        self._subscribed = False
        self._client: mqtt.Client | None = None

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def connected(self) -> bool:
        """True while subscribed to the topic on a live connection."""
        return self._connected and self._subscribed

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client_id = cfg.client_id or f"edgefleet-src-{cfg.name}-{uuid.uuid4().hex[:8]}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        client.reconnect_delay_set(
            min_delay=max(1, round(cfg.reconnect_min_s)), max_delay=round(cfg.reconnect_max_s)
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        return client

    def _open(self, hub: SourceHub, now: float) -> float | None:
        client = self._client = self._make_client()
        # connect_async + loop_start: paho's network thread connects, and on any failure waits
        # (back-off) and reconnects; loop_stop is the one stop signal it always honours.
        client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        client.loop_start()
        return None

    def _shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._connected = self._subscribed = False

    # -- paho callbacks (run on paho's network thread) ---------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self._record_error(
                f"broker {self.config.host}:{self.config.port} refused connection: {reason_code}"
            )
            return
        self._connected = True
        self._log.info("stream %r: connected to %s:%d", self.name, self.config.host, self.config.port)
        client.subscribe(self.config.topic, qos=self.config.qos)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._record_error(f"subscription to {self.config.topic!r} refused: {reason_codes}")
            return
        self._subscribed = True

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        was = self._connected
        self._connected = self._subscribed = False
        if was and not self._stopping.is_set():
            self._record_error(f"disconnected from broker ({reason_code}); reconnecting")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._record_error(
            f"cannot reach broker {self.config.host}:{self.config.port}; retrying with back-off"
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._count_frame()
        try:
            decoded = self._decoder.decode(message.payload, time.time())
            if decoded.bad:
                reasons = "; ".join(decoded.reasons) or "unreadable frame"
                self._reject(decoded.bad, f"topic {message.topic}: {reasons}")
            if decoded.samples.shape[0]:
                self._emit(decoded.samples, decoded.timestamps)
        except Exception as exc:  # paho swallows callback errors by default; keep them visible
            self._record_error(f"handling message on {message.topic}: {type(exc).__name__}: {exc}")
