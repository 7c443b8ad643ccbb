"""The agent's configuration: one TOML file, one pydantic model per section.

:func:`load_config` reads the file, lets ``EDGEFLEET_...`` environment variables override
any key (``EDGEFLEET_STORE__PATH``, ``EDGEFLEET_DEVICE__ID``: prefix, then the section
and key joined by ``__``), validates everything at once and resolves relative paths
against the file's directory. An invalid file raises one :class:`ConfigError` listing
every bad key with its dotted path (``sources[1].rate_hz``), the value found and what
was expected; unknown keys come with a "did you mean" suggestion.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from edgefleet.agent.config_ota import OtaConfig
from edgefleet.agent.config_section import Section as _Section
from edgefleet.agent.sources import SourceConfig
from edgefleet.agent.sources.base import STREAM_NAME_PATTERN
from edgefleet.agent.store.config import StoreConfig
from edgefleet.cloud_sync.config import SyncConfig
from edgefleet.config_issues import Shown, issues_from
from edgefleet.errors import ConfigError, ConfigIssue
from edgefleet.runtime.backends import BackendName
from edgefleet.types import BackpressurePolicy, NanPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ENV_PREFIX",
    "AgentConfig",
    "BatchingConfig",
    "DeviceConfig",
    "DriftConfig",
    "FallbackConfig",
    "FallbackModelConfig",
    "HealthConfig",
    "LoggingConfig",
    "ModelConfig",
    "OtaConfig",
    "PrometheusConfig",
    "load_config",
    "parse_config",
    "resolve_paths",
]

ENV_PREFIX = "EDGEFLEET_"
ENV_DELIMITER = "__"


class DeviceConfig(_Section):
    """``[device]``: who this device is."""

    id: str = Field(
        pattern=STREAM_NAME_PATTERN,
        description="unique device id, used in MQTT topics: letters, digits, '_', '.', '-' (max 64)",
    )
    name: str | None = Field(default=None, description="human-readable name for the dashboard")
    tags: list[str] = Field(default_factory=list, description="free-form labels, e.g. 'site:lyon'")
    state_dir: Path = Field(
        default=Path("/var/lib/edgefleet"), description="writable directory for the agent's own state"
    )
    stop_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="on SIGTERM: seconds to drain buffers and flush the store before exiting anyway",
    )


class ModelConfig(_Section):
    """``[model]``: the bundle to run and how."""

    bundle: Path = Field(description="model bundle directory or .tar (see `edgefleet bundle`)")
    backend: BackendName = Field(default="auto", description="'auto' picks by the model file's extension")
    providers: list[str] | None = Field(
        default=None, description="ONNX Runtime execution providers in preference order"
    )
    threads: int | None = Field(default=None, ge=1, le=256, description="inference threads")
    nan_policy: NanPolicy = Field(default="reject", description="NaN/inf in a batch: reject, zero or allow")
    cloud_bundle: Path | None = Field(
        default=None, description="larger model the cloud runs for fallback answers (optional)"
    )


class BatchingConfig(_Section):
    """``[batching]``: how windows are grouped into inference batches."""

    max_batch_size: int = Field(default=16, ge=1, le=4096, description="windows per inference call")
    batch_timeout_s: float = Field(
        default=0.05, gt=0, le=10, description="longest a ready window waits for a fuller batch"
    )
    buffer_capacity: int = Field(default=4096, ge=1, le=10_000_000, description="samples buffered per stream")
    backpressure: BackpressurePolicy = Field(
        default="drop_oldest", description="when a buffer is full: drop_oldest, drop_newest or block"
    )


class FallbackModelConfig(_Section):
    """``[fallback.models."<model name>"]``: one model's own confidence thresholds (a model's
    scores are calibrated its own way); an unset key takes the ``[fallback]`` value."""

    min_confidence: float | None = Field(
        default=None, ge=0, le=1, description="this model's edge scores below go to the cloud"
    )
    min_margin: float | None = Field(
        default=None, ge=0, le=1, description="this model's top-2 margins below go to the cloud"
    )
    max_entropy: float | None = Field(
        default=None, ge=0, le=1, description="this model's normalized entropies above go to the cloud"
    )


class FallbackConfig(_Section):
    """``[fallback]``: when to ask the cloud model instead of trusting the edge answer."""

    enabled: bool = Field(default=False, description="ask the cloud model when the edge is unsure")
    min_confidence: float = Field(default=0.6, ge=0, le=1, description="edge scores below go to the cloud")
    max_queue_windows: int = Field(default=256, ge=1, description="windows awaiting a cloud answer at most")
    latency_slo_ms: float = Field(
        default=500.0, gt=0, description="cloud answers later than this are replaced by the edge answer"
    )
    on_drift: bool = Field(
        default=False, description="also send windows while a drift alert is active on an input channel"
    )
    min_margin: float = Field(
        default=0.0, ge=0, le=1, description="top-2 probability margins below go to the cloud (0: off)"
    )
    max_entropy: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="normalized output entropies (0..1) above go to the cloud (1: off)",
    )
    range_tolerance: float | None = Field(
        default=None,
        ge=0,
        description="send windows outside the reference's per-channel [min, max] widened by this share of"
        " its width (unset: off)",
    )
    queue_high_water: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="send windows while their stream's ring buffer is at least this full (0..1; unset: off)",
    )
    inference_p95_slo_ms: float | None = Field(
        default=None, gt=0, description="send windows while the edge inference p95 is over this (unset: off)"
    )
    offload_capacity: bool = Field(
        default=True,
        description="queue_high / latency_slo send windows to the cloud instead of the edge model;"
        " unanswered ones are given back to the edge (false: ask after the edge inferred them)",
    )
    give_back_max_windows: int = Field(
        default=4096,
        gt=0,
        description="windows the cloud gave back (or sent while no model was active) queued for the"
        " edge at most; past it the oldest are dropped and counted",
    )
    max_requests_per_min: int | None = Field(
        default=None,
        ge=1,
        description="cloud requests in any minute at most; past it the edge answers (unset: no limit)",
    )
    max_bytes_per_hour: int | None = Field(
        default=None,
        ge=1,
        description="request bytes in any hour at most; past it the edge answers (unset: no limit)",
    )
    models: dict[str, FallbackModelConfig] = Field(
        default_factory=dict,
        description="per model name (the bundle manifest's), its own confidence thresholds",
    )
    target_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="send the least confident share (0..1) of recent windows instead of fixed confidence"
        " thresholds (unset: off)",
    )
    target_window: int = Field(
        default=500, ge=10, description="recent windows whose scores rank each window for target_share"
    )
    score: Literal["confidence", "margin", "entropy"] = Field(
        default="confidence",
        description="how target_share ranks windows: top probability, top-2 margin or normalized entropy",
    )
    deferred_max_bytes: int = Field(
        default=1_048_576,
        ge=0,
        description="window bytes kept in the store for a late cloud answer after a timeout, offline "
        "or budget outcome (oldest dropped first; 0: none kept)",
    )


class DriftConfig(_Section):
    """``[drift]``: comparing live inputs and outputs to the bundle's reference profile
    (:mod:`edgefleet.agent.drift_monitor`; metrics and thresholds: docs/drift.md)."""

    enabled: bool = Field(default=True, description="compare live data to the bundle's reference profile")
    interval_s: float = Field(
        default=300.0, gt=0, description="longest time between two drift reports (seconds)"
    )
    windows: int = Field(default=256, ge=8, description="windows per drift report at most")
    min_interval_s: float = Field(
        default=60.0,
        ge=0,
        description=(
            "shortest time between two drift reports (seconds of data time): at high window rates a report "
            "gathers more than `windows` windows rather than closing every few seconds (0: no minimum)"
        ),
    )
    sample: bool = Field(
        default=True,
        description=(
            "at window rates where a report held open for min_interval_s would count more than "
            "`windows` windows, count a systematic sample of the batches (about that many); false: "
            "count every sample"
        ),
    )
    psi_threshold: float = Field(default=0.1, gt=0, description="population stability index that flags drift")
    js_threshold: float = Field(
        default=0.15, gt=0, le=1, description="Jensen-Shannon distance (base 2) that flags drift"
    )
    ks_threshold: float = Field(
        default=0.15, gt=0, le=1, description="Kolmogorov-Smirnov statistic that flags drift"
    )
    scale_threshold: float = Field(
        default=0.2,
        gt=0,
        description="change of a channel's log std relative to the other channels' that flags drift (a gain)",
    )
    swap_threshold: float = Field(
        default=0.3,
        gt=0,
        description="correlation-distance gain from exchanging two channels that flags drift (swapped axes)",
    )
    alert_after: int = Field(
        default=2, ge=1, description="consecutive reports over a threshold before a channel is flagged"
    )
    clear_after: int = Field(
        default=3, ge=1, description="consecutive reports under every threshold before a flag clears"
    )
    min_samples: int = Field(
        default=1000,
        ge=1,
        description="samples per channel a report needs to move the alert state (smaller ones are only sent)",
    )
    max_cpu: float = Field(
        default=0.005,
        gt=0,
        le=1,
        description="share of one core drift may use; batches beyond it are skipped (and counted as skipped)",
    )


class PrometheusConfig(_Section):
    """``[health.prometheus]``: an optional /metrics endpoint."""

    enabled: bool = Field(default=False, description="serve Prometheus metrics at /metrics")
    host: str = Field(default="127.0.0.1", description="bind address; localhost unless scraped remotely")
    port: int = Field(default=9108, ge=1, le=65535, description="TCP port of /metrics")


class HealthConfig(_Section):
    """``[health]``: self-monitoring."""

    metrics_interval_s: float = Field(default=10.0, gt=0, description="how often metrics are sampled")
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    watchdog: bool = Field(default=True, description="ping the systemd watchdog when the unit sets one")


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LoggingConfig(_Section):
    """``[logging]``."""

    format: Literal["json", "logfmt", "text"] = Field(default="text", description="log line format")
    level: LogLevel = Field(default="INFO", description="lowest level logged (case-insensitive)")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class AgentConfig(BaseSettings):
    """The whole agent configuration; see ``edgefleet config example``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid", case_sensitive=False
    )

    device: DeviceConfig
    sources: list[SourceConfig] = Field(min_length=1, description="one [[sources]] table per stream")
    model: ModelConfig
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    ota: OtaConfig = Field(default_factory=OtaConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Any]) -> list[Any]:
        seen: dict[str, int] = {}
        for i, source in enumerate(sources):
            if source.name in seen:
                raise ValueError(
                    f"stream names must be unique; {source.name!r} is used by "
                    f"sources[{seen[source.name]}] and sources[{i}]"
                )
            seen[source.name] = i
        return sources

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: the environment overrides the file (passed as init values).
        return env_settings, init_settings


# -- loading ---------------------------------------------------------------------------------------


def load_config(path: str | Path) -> AgentConfig:
    """Read, override from the environment, validate and resolve one agent config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"agent config {path} does not exist",
            source=str(path),
            hint=f"write a commented example with `edgefleet config example > {path}` and edit it",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read agent config {path}: {exc}",
            source=str(path),
            hint="check the path and its permissions",
        ) from None
    return parse_config(text, source=str(path), base_dir=path.resolve().parent)


_TOML_POSITION = re.compile(r"^(?P<msg>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> AgentConfig:
    """Validate TOML text as an :class:`AgentConfig`; relative paths resolve against ``base_dir``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(exc, text, source) from None
    try:
        config = AgentConfig(**data)
    except SettingsError as exc:
        raise _env_parse_error(exc, source) from None
    except ValidationError as exc:
        issues = issues_from(
            exc, data, AgentConfig, env_prefix=ENV_PREFIX, env_delimiter=ENV_DELIMITER, tag_noun="source type"
        )
        count = len(issues)
        raise ConfigError(
            f"agent config {source} has {count} invalid key{'s' if count != 1 else ''}",
            issues=issues,
            source=source,
            hint="fix the keys listed above; `edgefleet config example` shows every section with comments",
        ) from None
    return resolve_paths(config, base_dir) if base_dir is not None else config


def _env_parse_error(exc: SettingsError, source: str) -> ConfigError:
    """pydantic-settings stops at the first environment value it cannot decode (invalid JSON)."""
    found = re.search(r'field "([^"]+)"', str(exc))
    section = found[1] if found else "?"
    prefix = f"{ENV_PREFIX}{section}".upper()
    names = sorted(
        n for n in os.environ if n.upper() == prefix or n.upper().startswith(prefix + ENV_DELIMITER)
    )
    cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    issues = [
        ConfigIssue(
            name[len(ENV_PREFIX) :].lower().replace(ENV_DELIMITER, "."),
            os.environ[name],
            f"valid JSON (set by environment variable {name}){cause}",
        )
        for name in names
    ]
    return ConfigError(
        f"agent config {source}: the environment override for [{section}] cannot be parsed",
        issues=issues,
        source=source,
        hint="lists and tables in EDGEFLEET_* variables must be JSON, e.g. EDGEFLEET_DEVICE__TAGS='[\"a\"]'",
    )


def _toml_error(exc: tomllib.TOMLDecodeError, text: str, source: str) -> ConfigError:
    found = _TOML_POSITION.match(str(exc))
    if found is None:
        return ConfigError(f"agent config {source} is not valid TOML: {exc}", source=source)
    line, col = int(found["line"]), int(found["col"])
    lines = text.splitlines()
    content = lines[line - 1] if 0 < line <= len(lines) else ""
    return ConfigError(
        f"agent config {source} is not valid TOML at line {line}, column {col}: {found['msg']}",
        issues=[ConfigIssue(f"line {line}, column {col}", Shown(content.strip()), "valid TOML syntax")],
        source=source,
        hint="TOML strings need quotes, tables are [section], each key = value on its own line",
    )


# -- path resolution -------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def resolve_paths(config: M, base_dir: Path) -> M:
    """A copy of ``config`` where every relative ``Path`` value is made absolute under ``base_dir``."""
    updates: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        resolved = _resolve_value(value, base_dir)
        if resolved is not value:
            updates[name] = resolved
    return config.model_copy(update=updates) if updates else config


def _resolve_value(value: Any, base_dir: Path) -> Any:
    if isinstance(value, Path):
        return value if value.is_absolute() else (base_dir / value).resolve()
    if isinstance(value, BaseModel):
        return resolve_paths(value, base_dir)
    if isinstance(value, list):
        items = [_resolve_value(v, base_dir) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value
