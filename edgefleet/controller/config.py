"""The controller's configuration: one TOML file, validated by pydantic (unknown keys are errors).

Secrets (MQTT password, bootstrap admin token and password) are never written in the file itself;
the file names the environment variables that hold them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgefleet.cloud_sync.topics import UPLINK_KINDS, UplinkKind
from edgefleet.config_issues import issues_from
from edgefleet.controller.drift_references import FleetDriftConfig
from edgefleet.controller.inference.config import InferenceConfig
from edgefleet.controller.login_throttle import LoginThrottleConfig
from edgefleet.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

__all__ = [
    "OTA_HOST_KINDS",
    "STORED_KINDS",
    "UPLINK_KINDS",
    "AuthConfig",
    "ControllerConfig",
    "DatabaseConfig",
    "HttpConfig",
    "IngestConfig",
    "MqttConfig",
    "MqttTlsConfig",
    "RetentionConfig",
    "UplinkKind",
    "example_config_text",
    "inactive_kinds_warning",
    "load_controller_config",
]


# ``UplinkKind``/``UPLINK_KINDS`` are the protocol's (cloud_sync/topics.py): every uplink kind can be
# configured. The controller stores these; the others it receives, de-duplicates and counts as the
# device's sign of life, but keeps nothing of (their features have not landed yet).
STORED_KINDS: tuple[UplinkKind, ...] = ("results", "telemetry", "status", "events", "drift", "result_update")
OTA_HOST_KINDS: tuple[UplinkKind, ...] = ("ota/progress", "ota/chunk_request")
"""Always read (under ``controller serve``) by the OTA host (controller/ota_hosting.py), listed or not."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttTlsConfig(_Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(default=False, description="skip hostname verification (testing only)")


class MqttConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["mqtt5", "mqtt311"] = "mqtt5"
    client_id: str = Field(
        default="",
        description="empty: edgefleet-controller-<host>-<pid>-<random> (no persistent session); "
        "a broker with use_username_as_clientid replaces it with the user name",
    )
    share_group: str = Field(
        default="edgefleet-controller",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="MQTT 5 shared-subscription group; controllers in one group split the uplink load",
    )
    username: str = ""
    password_env: str = Field(default="", description="environment variable holding the MQTT password")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    topic_prefix: str = "edgefleet/v1"
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


class DatabaseConfig(_Section):
    url: str = Field(
        default="",
        description="postgresql://user@host:port/db for PostgreSQL; empty: the SQLite file at sqlite_path",
    )
    sqlite_path: Path = Path("controller.db")
    schema_name: str = Field(
        default="public", pattern=r"^[a-z_][a-z0-9_]*$", description="PostgreSQL schema (search_path)"
    )
    pool_size: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _check_url(self) -> DatabaseConfig:
        if self.url and not self.url.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise ValueError(
                f"database.url {self.url!r} is not supported; expected postgresql://... or sqlite:///path"
            )
        return self

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    def resolved_sqlite_path(self) -> Path:
        if self.url.startswith("sqlite:///"):
            return Path(self.url.removeprefix("sqlite:///"))
        return self.sqlite_path


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    cookie_secure: bool = Field(default=False, description="set the Secure flag (serve behind HTTPS)")
    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    stream_interval_s: float = Field(default=1.0, gt=0, le=60)


class AuthConfig(_Section):
    bootstrap_admin_token_env: str = "EDGEFLEET_CONTROLLER_ADMIN_TOKEN"
    bootstrap_admin_user: str = "admin"
    bootstrap_admin_password_env: str = "EDGEFLEET_CONTROLLER_ADMIN_PASSWORD"
    login_throttle: LoginThrottleConfig = Field(default_factory=LoginThrottleConfig)


class IngestConfig(_Section):
    batch_max_messages: int = Field(default=500, ge=1, le=100_000)
    batch_max_delay_ms: int = Field(default=150, ge=1, le=10_000)
    queue_max: int = Field(default=200_000, ge=100)
    max_message_bytes: int = Field(default=512 * 1024, ge=1024)
    result_bucket_s: int = Field(default=60, ge=1, le=3600)
    kinds: list[UplinkKind] = Field(
        default_factory=lambda: list(STORED_KINDS),
        description=f"uplink kinds to subscribe to, of {', '.join(UPLINK_KINDS)}",
    )

    def inactive_kinds(self) -> list[UplinkKind]:
        """Configured kinds whose messages the controller receives but does not store yet."""
        return [kind for kind in self.kinds if kind not in STORED_KINDS and kind not in OTA_HOST_KINDS]


class RetentionConfig(_Section):
    interval_s: float = Field(default=60.0, gt=0)
    late_data_s: int = Field(default=300, ge=0, description="re-aggregate telemetry this far back each run")
    raw_telemetry_s: int = Field(default=86_400, ge=60)
    minute_aggregates_s: int = Field(default=7 * 86_400, ge=60)
    hour_aggregates_s: int = Field(default=365 * 86_400, ge=3600)
    results_s: int = Field(default=90 * 86_400, ge=60)
    events_s: int = Field(default=30 * 86_400, ge=60)
    drift_s: int = Field(default=30 * 86_400, ge=60)
    commands_s: int = Field(default=30 * 86_400, ge=60)
    dedup_s: int = Field(
        default=7 * 86_400,
        ge=60,
        description="remember message ids this long (resends older than this re-ingest)",
    )
    hard_examples_s: int = Field(
        default=30 * 86_400, ge=60, description="keep windows sent to the cloud (hard examples) this long"
    )


class ControllerConfig(_Section):
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    drift: FleetDriftConfig = Field(default_factory=FleetDriftConfig)


def inactive_kinds_warning(config: ControllerConfig) -> str | None:
    """What to tell an operator who subscribed to kinds the controller does not store yet."""
    inactive = config.ingest.inactive_kinds()
    if not inactive:
        return None
    return (
        f"ingest.kinds {', '.join(repr(k) for k in inactive)}: not active yet; the controller receives"
        " these messages (they mark the device as seen) but stores nothing of them; it stores only"
        f" {', '.join(STORED_KINDS)}"
    )


def load_controller_config(path: Path | None, *, overrides: dict[str, Any] | None = None) -> ControllerConfig:
    """Read and validate ``path`` (None: all defaults). Relative SQLite paths resolve against the file."""
    data: dict[str, Any] = {}
    source = str(path) if path else "(defaults)"
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"controller config {path} does not exist",
                source=source,
                hint="write one with `edgefleet controller example-config > controller.toml`",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read controller config {path}: {exc}", source=source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"controller config {path} is not valid TOML: {exc}",
                source=source,
                hint="check quoting and [section] headers",
            ) from None
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})[key] = value
    try:
        config = ControllerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"controller config {source} is invalid",
            issues=issues_from(exc, data, ControllerConfig),
            source=source,
            hint="fix the keys listed above; `edgefleet controller example-config` shows every key",
        ) from None
    if path is not None and not config.database.sqlite_path.is_absolute():
        config.database.sqlite_path = (path.parent / config.database.sqlite_path).resolve()
    if path is not None and config.inference.bundle is not None and not config.inference.bundle.is_absolute():
        config.inference.bundle = (path.parent / config.inference.bundle).resolve()
    if path is not None:
        config.drift.reference_bundles = [(path.parent / p).resolve() for p in config.drift.reference_bundles]
    return config


def example_config_text() -> str:
    """A commented controller.toml with every key at its default."""
    return """\
# edgefleet cloud controller configuration (edgefleet controller serve --config controller.toml)

[mqtt]
# With the shipped broker config (deploy/mosquitto/edgefleet.conf, docs/security.md):
# port = 8884, username = "controller-1" (one per controller process), password_env set,
# topic_prefix = "devices/edgefleet/v1", [mqtt.tls] enabled with ca_file.
host = "127.0.0.1"
port = 1883
protocol = "mqtt5"                  # "mqtt5" (shared subscriptions) or "mqtt311"
client_id = ""                      # empty: edgefleet-controller-<hostname>-<pid>-<random>, no
                                    # persistent session; a broker with use_username_as_clientid
                                    # (the shipped config) uses the user name instead
share_group = "edgefleet-controller"  # controllers in one group split the fleet's uplink messages
username = ""
password_env = ""                   # name of the environment variable holding the MQTT password
keepalive_s = 30
topic_prefix = "edgefleet/v1"

[mqtt.tls]
enabled = false
# ca_file = "/etc/edgefleet/ca.pem"
# cert_file = "/etc/edgefleet/controller.pem"
# key_file = "/etc/edgefleet/controller.key"

[database]
url = ""                            # e.g. "postgresql://edgefleet@db.internal:5432/edgefleet"
sqlite_path = "controller.db"       # used when url is empty; relative to this file
schema_name = "public"              # PostgreSQL only
pool_size = 4

[http]
host = "127.0.0.1"
port = 8080
cookie_secure = false               # true when served behind HTTPS
session_ttl_s = 43200
stream_interval_s = 1.0

[auth]
# On start, the token in this variable (if set) is stored (hashed) as an admin token,
# and the password in the second variable (if set) becomes the page login of the admin user.
bootstrap_admin_token_env = "EDGEFLEET_CONTROLLER_ADMIN_TOKEN"
bootstrap_admin_user = "admin"
bootstrap_admin_password_env = "EDGEFLEET_CONTROLLER_ADMIN_PASSWORD"

[auth.login_throttle]
# Checked before any password hash (docs/security.md, "Login throttling").
enabled = true
free_failures = 5                   # per user name, then back-off: 1 s, 2 s, 4 s ... max_lockout_s
source_free_failures = 20           # per client address (the TCP peer; proxies are not trusted)
base_lockout_s = 1.0
max_lockout_s = 900.0
forget_after_s = 3600.0
max_concurrent_checks = 4           # scrypt hashes at once (16 MiB each); more get 429
max_tracked = 50000

[ingest]
batch_max_messages = 500            # one database transaction per batch ...
batch_max_delay_ms = 150            # ... or per this many milliseconds, whichever comes first
queue_max = 200000
max_message_bytes = 524288
result_bucket_s = 60                # result summaries are kept per label per this many seconds
kinds = ["results", "telemetry", "status", "events", "drift", "result_update"]
# also accepted, not active yet (received, nothing stored): "infer/request"
# (the OTA host always reads "ota/progress" and "ota/chunk_request": docs/ota.md)

[retention]
interval_s = 60
late_data_s = 300
raw_telemetry_s = 86400             # raw telemetry for a day, then per-minute and per-hour aggregates
minute_aggregates_s = 604800
hour_aggregates_s = 31536000
results_s = 7776000
events_s = 2592000
drift_s = 2592000
commands_s = 2592000
dedup_s = 604800
hard_examples_s = 2592000           # windows sent to the cloud, with both answers (30 days)

[inference]
# Cloud inference workers answering the devices' fallback requests (infer/request); also runnable
# on their own: edgefleet controller infer --config controller.toml
enabled = false
# bundle = "models/bundles/watch-cloud"   # the cloud model; relative to this file
workers = 1                         # MQTT 5: the workers split the requests (shared subscription)
max_batch_size = 32
max_wait_ms = 5.0                   # the oldest pending request waits at most this long for a batch
threads = 1                         # inference threads per worker
share_group = "edgefleet-inference"
max_request_bytes = 262144
keep_hard_examples = true           # store each answered window with both answers (export-hard-examples)
# usernames = ["infer-1", "infer-2"]  # one broker user per worker (the shipped broker: user = client id)
# password_env = "EDGEFLEET_INFER_MQTT_PASSWORD"   # their password; empty: mqtt.password_env

[drift]
# Fleet drift (/api/fleet/drift, the dashboard's fleet drift panel) merges reports' raw counts per
# model version and scores the sum against the version's reference profile, read from bundles:
reference_bundles = []              # e.g. ["/srv/edgefleet/bundles"]; relative to this file
psi_threshold = 0.1                 # merged scores above these are marked "over"
js_threshold = 0.15
ks_threshold = 0.15
scale_threshold = 0.2
swap_threshold = 0.3
"""
