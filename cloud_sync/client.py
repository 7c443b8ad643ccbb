"""A thin, single-threaded wrapper around one paho-mqtt connection.

One :class:`MqttLink` object is one connection attempt: the sync service builds a fresh one
after every loss, so paho never resends on its own behind our back (the store outbox is the
only source of resends, keeping message ids stable). All calls, callbacks included, happen
on the thread that calls :meth:`MqttLink.loop`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgefleet.cloud_sync.awaiting import NO_MATCHING_SUBSCRIBERS
from edgefleet.cloud_sync.config import SyncConfig, TlsConfig
from edgefleet.errors import ConfigError

__all__ = ["LinkCallbacks", "MqttLink", "Will", "build_tls_context"]

log = logging.getLogger(__name__)

_NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason code

AckCallback = Callable[[int, bool, str], None]
MessageCallback = Callable[[str, bytes], None]


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass
class LinkCallbacks:
    on_ack: AckCallback
    """(mid, accepted, reason): the broker acknowledged (or refused) a publish."""
    on_message: MessageCallback
    """(topic, payload): a downlink message arrived."""


def build_tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS client context trusting only ``tls.ca_file`` (pinned), with the client cert if set."""
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path is not None and not path.is_file():
            raise ConfigError(
                f"sync.tls.{name} {str(path)!r} does not exist; expected a PEM file",
                hint="`edgefleet device provision --dev-ca` writes a CA, device and broker certificates",
            )
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file))
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the sync TLS files: {exc}",
            hint="ca_file, cert_file and key_file must be PEM; the key must match the certificate",
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.insecure:
        log.warning("sync.tls.insecure is set: the broker host name is not checked (CA still verified)")
        context.check_hostname = False
    return context


def _close_leaked_sockets(exc: BaseException) -> None:
    # paho-mqtt 2.x does not close the TCP socket when the TLS handshake fails (bad CA, refused
    # client certificate); it would linger until garbage collection. Close what the failed
    # frames still hold.
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket):
                with contextlib.suppress(OSError):
                    value.close()
        tb = tb.tb_next


class MqttLink:
    """One MQTT connection. Use :meth:`open`, then call :meth:`loop` until :attr:`alive` is false."""

    def __init__(
        self,
        config: SyncConfig,
        client_id: str,
        callbacks: LinkCallbacks,
        *,
        will: Will | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.callbacks = callbacks
        self.connected = False
        self.closed = False
        self.error: str | None = None
        self.receive_maximum: int | None = None
        v5 = config.protocol == "mqtt5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else False,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        self.client.connect_timeout = config.connect_timeout_s
        # The service enforces its own in-flight window; paho must never hold messages back.
        self.client.max_inflight_messages_set(max(config.max_inflight, 20))
        self.client.max_queued_messages_set(0)
        if tls_context is not None:
            self.client.tls_set_context(tls_context)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password is not None else None
            self.client.username_pw_set(config.username, password)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self._v5 = v5

    # ------------------------------------------------------------ paho callbacks

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.error = f"broker refused the connection: {reason}"
            self.closed = True
            return
        # MQTT 5: the broker says how many unacknowledged QoS>0 publishes it accepts from us
        # (Mosquitto: 20 by default). paho does not enforce it, so the uplink window does.
        receive_maximum = getattr(props, "ReceiveMaximum", None)
        if isinstance(receive_maximum, int) and receive_maximum > 0:
            self.receive_maximum = receive_maximum
        self.connected = True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not self.closed:
            self.error = self.error or f"connection lost: {reason}"
        self.connected = False
        self.closed = True

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if getattr(reason, "value", 0) == _NO_MATCHING_SUBSCRIBERS:
            # Success for MQTT, but nobody received it: the uplink keeps the row and retries.
            self.callbacks.on_ack(mid, True, NO_MATCHING_SUBSCRIBERS)
            return
        self.callbacks.on_ack(mid, not reason.is_failure, str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.callbacks.on_message(message.topic, bytes(message.payload))

    # ------------------------------------------------------------ operations

    def open(self) -> bool:
        """Connect and wait for CONNACK (at most ``connect_timeout_s``). False on any failure."""
        cfg = self.config
        try:
            if self._v5:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = cfg.session_expiry_s
                self.client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False, properties=props)
            else:
                self.client.connect(cfg.host, cfg.port, cfg.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.error = f"cannot reach {cfg.host}:{cfg.port}: {exc}"
            _close_leaked_sockets(exc)
            self.close()
            return False
        deadline = time.monotonic() + cfg.connect_timeout_s
        while not self.connected and not self.closed and time.monotonic() < deadline:
            self.loop(0.05)
        if not self.connected:
            self.error = (
                self.error or f"no CONNACK from {cfg.host}:{cfg.port} within {cfg.connect_timeout_s}s"
            )
            self.close()
            return False
        return True

    @property
    def alive(self) -> bool:
        return self.connected and not self.closed

    def loop(self, timeout: float) -> None:
        if self.closed and not self.connected:
            return
        rc = self.client.loop(timeout=timeout)
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            self.error = self.error or f"network loop ended: {mqtt.error_string(rc)}"
            self.connected = False
            self.closed = True

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> int | None:
        """Queue one publish; returns its mid, or None when the connection is gone."""
        if not self.alive:
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_QUEUE_SIZE):
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                self.connected = False
                self.closed = True
                self.error = self.error or "connection lost while publishing"
            return None
        return int(info.mid)

    def send(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        """:meth:`publish` with positional arguments, the shape the uplink drain expects."""
        return self.publish(topic, payload, qos=qos, retain=retain)

    def subscribe(self, topics: Sequence[str], *, qos: int = 1) -> None:
        if self.alive and topics:
            self.client.subscribe([(topic, qos) for topic in topics])

    def close(self) -> None:
        """Disconnect cleanly if possible (no last will), then drop the socket."""
        if self.connected:
            try:
                self.client.disconnect()
                self.client.loop(timeout=0.05)
            except (OSError, ssl.SSLError):
                pass
        self.connected = False
        self.closed = True
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
