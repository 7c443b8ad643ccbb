"""``SyncConfig``: the ``sync`` section of the agent configuration (MQTT uplink/downlink).

Every field is described, because ``edgefleet config`` renders these descriptions as the
reference documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from edgefleet.cloud_sync.topics import DEFAULT_PREFIX

__all__ = ["MqttProtocol", "SyncConfig", "TlsConfig"]

MqttProtocol = Literal["mqtt5", "mqtt311"]


class TlsConfig(BaseModel):
    """TLS towards the broker. The CA is pinned: only brokers signed by ``ca_file`` are accepted."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path = Field(description="PEM file of the CA that signed the broker certificate (pinned).")
    cert_file: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (with key_file)."
    )
    key_file: Path | None = Field(default=None, description="PEM private key of cert_file.")
    insecure: bool = Field(
        default=False,
        description="Skip the broker host-name check (the CA is still verified). Development only.",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both for mutual TLS, or neither")
        return self


class SyncConfig(BaseModel):
    """How the agent talks to the fleet broker. Offline periods are fine: data waits in the store."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Run the MQTT sync at all.")
    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    protocol: MqttProtocol = Field(
        default="mqtt5",
        description="mqtt5 (default) or mqtt311; every feature has a 3.1.1 fallback (docs/protocol.md).",
    )
    client_id: str | None = Field(
        default=None, description="MQTT client id; defaults to the device id (ACLs may rely on it)."
    )
    keepalive_s: int = Field(
        default=30, ge=2, le=65535, description="MQTT keep-alive; a silent broker is detected after ~1.5x."
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="MQTT 5 session expiry: how long the broker keeps our subscriptions and queued "
        "commands while we are offline (3.1.1 sessions never expire).",
    )
    tls: TlsConfig | None = Field(default=None, description="TLS settings; None connects in clear text.")
    username: str | None = Field(default=None, description="MQTT user name (password authentication).")
    password: SecretStr | None = Field(default=None, description="MQTT password; never logged.")
    topic_prefix: str = Field(
        default=DEFAULT_PREFIX,
        min_length=1,
        description="Topic namespace; topics are <prefix>/<device>/<kind>.",
    )
    qos: Literal[1, 2] = Field(
        default=1, description="QoS of uplink publishes. 1 plus receiver de-dup gives exactly-once."
    )
    max_batch_results: int = Field(
        default=500, ge=1, description="At most this many results per MQTT message (bigger rows are split)."
    )
    max_message_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Largest MQTT payload sent; the receiver's decode limit must be at least this.",
    )
    bandwidth_bytes_per_hour: int | None = Field(
        default=None,
        ge=1024,
        description="Token-bucket budget for metered links (payload + MQTT header bytes); None: unlimited. "
        "What does not fit waits in the store.",
    )
    max_messages_per_s: float | None = Field(
        default=None, gt=0, description="Publish rate limit in messages per second; None: unlimited."
    )
    max_inflight: int = Field(
        default=32, ge=1, le=65535, description="Publishes awaiting the broker's acknowledgement at once."
    )
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First reconnect back-off ceiling.")
    reconnect_max_s: float = Field(default=60.0, gt=0, description="Largest reconnect back-off ceiling.")
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="A connection attempt without CONNACK after this long has failed."
    )
    ack_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="No broker acknowledgement (PUBACK) for this long while publishes are in flight: "
        "reconnect. The controller's end-to-end acknowledgement has its own timer, resend_after_s.",
    )
    end_to_end_ack: bool = Field(
        default=True,
        description="Keep each outbox row until the edgefleet controller acknowledges it (an 'ack' "
        "downlink after it stored the row); the broker's PUBACK only marks it sent. False: the broker's "
        "PUBACK deletes the row (for a broker with no edgefleet controller behind it; a broker restart "
        "without persistence can then lose what it acknowledged).",
    )
    resend_after_s: float = Field(
        default=30.0,
        gt=0,
        description="With end_to_end_ack: a row the broker acknowledged but the controller has not "
        "acknowledged this long after is sent again (the controller de-duplicates).",
    )
    max_awaiting_ack: int = Field(
        default=512,
        ge=1,
        description="With end_to_end_ack: rows sent but not yet acknowledged by the controller at most; "
        "more waits until acknowledgements come back.",
    )
    drain_interval_s: float = Field(
        default=0.5, gt=0, description="How often the store outbox is polled when it was found empty."
    )
    status_interval_s: float = Field(
        default=60.0, gt=0, description="How often the retained online status is refreshed."
    )
    state_file: Path | None = Field(
        default=None,
        description="JSON file where the running sync writes its state for `edgefleet sync status`; "
        "default: <store path>.sync.json.",
    )

    @model_validator(mode="after")
    def _check(self) -> SyncConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def state_path(self, store_path: Path) -> Path:
        """Where the sync state file lives for a store at ``store_path``."""
        return self.state_file or store_path.with_name(store_path.name + ".sync.json")
