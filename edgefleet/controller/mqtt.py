"""The controller's one MQTT connection: uplink subscriptions in, commands out.

Under MQTT 5 every uplink kind but ``status`` is read through a shared subscription
(``$share/<group>/edgefleet/v1/+/<kind>``), so the controllers of one group split the load.
``status`` is read with a plain subscription by every controller, because shared subscriptions
never deliver retained messages (docs/protocol.md); applying a status twice is harmless.
Under MQTT 3.1.1 every filter is plain: run one consuming controller.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgefleet.cloud_sync.topics import controller_filters
from edgefleet.controller.config import MqttConfig, UplinkKind

__all__ = ["ControllerMqtt", "subscription_filters"]

log = logging.getLogger(__name__)

MessageSink = Callable[[str, bytes, float], object]
_SESSION_EXPIRY_S = 3600


def subscription_filters(config: MqttConfig, kinds: Sequence[UplinkKind]) -> list[str]:
    """The filters this controller subscribes to (see the module docstring)."""
    shared_kinds = tuple(k for k in kinds if k != "status")
    group = config.share_group if config.protocol == "mqtt5" else None
    filters = controller_filters(group=group, kinds=shared_kinds, prefix=config.topic_prefix)
    if "status" in kinds:
        filters += controller_filters(group=None, kinds=("status",), prefix=config.topic_prefix)
    return filters


class ControllerMqtt:
    """Connects in the background, re-subscribes on every reconnect, hands messages to ``sink``."""

    def __init__(self, config: MqttConfig, kinds: Sequence[UplinkKind], sink: MessageSink) -> None:
        self.config = config
        self.filters = subscription_filters(config, kinds)
        self.sink = sink
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.last_error: str | None = None
        self._intake = True
        persistent = bool(config.client_id)
        client_id = config.client_id or (
            f"edgefleet-controller-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self._v5 = config.protocol == "mqtt5"
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else not persistent,
        )
        # A named controller keeps its broker session across restarts, so nothing is missed meanwhile.
        self._clean_start = not persistent
        self._connect_properties: Properties | None = None
        if self._v5 and persistent:
            self._connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            self._connect_properties.SessionExpiryInterval = _SESSION_EXPIRY_S
        if config.username:
            self.client.username_pw_set(config.username, config.password())
        if config.tls.enabled:
            self.client.tls_set(
                ca_certs=str(config.tls.ca_file) if config.tls.ca_file else None,
                certfile=str(config.tls.cert_file) if config.tls.cert_file else None,
                keyfile=str(config.tls.key_file) if config.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            self.client.tls_insecure_set(config.tls.insecure)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; failures are logged and retried, never raised."""
        self._intake = True
        if self._v5:
            self.client.connect_async(
                self.config.host,
                self.config.port,
                keepalive=self.config.keepalive_s,
                clean_start=self._clean_start,
                properties=self._connect_properties,
            )
        else:
            self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()

    def wait_ready(self, timeout: float) -> bool:
        """True once connected and subscribed."""
        return self._subscribed.wait(timeout)

    def stop_intake(self) -> None:
        """Stop taking uplink messages but stay connected (the last acknowledgements go out).
        What the broker delivers meanwhile is dropped unacknowledged: its devices send it again."""
        self._intake = False
        if self.connected:
            self.client.unsubscribe(self.filters)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout: float = 5.0) -> str | None:
        """Publish and wait for the broker's acknowledgement; None on success, else why not."""
        if not self.connected:
            return f"not connected to the broker at {self.config.host}:{self.config.port}"
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return f"publish failed: {mqtt.error_string(info.rc)}"
        deadline = time.monotonic() + timeout
        while not info.is_published():
            if time.monotonic() > deadline:
                return f"the broker did not acknowledge within {timeout:.0f}s"
            time.sleep(0.005)
        return None

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1) -> bool:
        """Queue a publish without waiting for the broker; False when not connected."""
        if not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=qos)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # --- paho callbacks (network thread) ----------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("%s (%s:%d)", self.last_error, self.config.host, self.config.port)
            return
        self.last_error = None
        self._connected.set()
        if self._v5:
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])
        else:
            client.subscribe([(f, 1) for f in self.filters])
        log.info("connected to %s:%d; subscribing to %s", self.config.host, self.config.port, self.filters)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self.last_error = f"broker refused subscriptions: {', '.join(refused)}"
            log.error("%s (filters %s)", self.last_error, self.filters)
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if reason.is_failure:
            self.last_error = f"disconnected: {reason}"
            log.warning("lost the broker connection (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not self._intake:
            return
        try:
            self.sink(message.topic, bytes(message.payload), time.time())
        except Exception:  # an exception here would end paho's network thread
            log.exception("ingest refused a message on %s", message.topic)
