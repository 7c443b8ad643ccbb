"""``[ota]`` of the agent config: trusted signers, the transfer, validation, shadow runs and
probation (docs/ota.md; every key in docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edgefleet.agent.config_section import Section as _Section

__all__ = ["OtaConfig"]


class OtaConfig(_Section):
    """``[ota]``: which bundle signers this device trusts."""

    trusted_keys: list[Path] = Field(
        default_factory=list,
        description="Ed25519 public keys (.pub from `edgefleet keys generate`); with any listed, only"
        " bundles signed by one of them are loaded",
    )
    # --- transfer (issue 16, edgefleet/agent/ota_client.py)
    download_dir: Path | None = Field(
        default=None,
        description="where offered bundles are downloaded (resumable across restarts); default"
        " <device.state_dir>/ota",
    )
    min_free_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="free disk that must remain beside a downloaded bundle; an offer that would leave"
        " less is refused before the first byte",
    )
    chunk_window: int = Field(
        default=8, ge=1, le=256, description="chunks asked for at once over MQTT (the request window)"
    )
    chunk_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="no chunk for this long: ask again for what is still missing",
    )
    # -- activation (validation, A/B slots, probation): edgefleet/agent/ota_install.py ----------
    validation_timeout_s: float = Field(
        default=60.0, gt=0, description="a candidate bundle's validation (own process) is refused after this"
    )
    max_latency_ms: float | None = Field(
        default=None,
        gt=0,
        description="latency budget for a candidate: p95 of one batch of 16 windows, in ms",
    )
    max_latency_ratio: float | None = Field(
        default=None,
        gt=0,
        description="latency budget for a candidate as a multiple of the active model's p95",
    )
    probation_s: float = Field(
        default=60.0, ge=0, description="how long a new model is watched before it is kept"
    )
    probation_min_windows: int = Field(
        default=50, ge=1, description="windows a probation needs before a verdict"
    )
    probation_max_error_rate: float = Field(
        default=0.05, ge=0, le=1, description="share of windows failing inference that rolls a new model back"
    )
    probation_max_p95_ratio: float | None = Field(
        default=None,
        gt=0,
        description="p95 latency over the previous model's that rolls a new model back (off when unset:"
        " a swapped-in model takes the float input path, so small batches run slower than before the swap)",
    )
    probation_max_p95_ms: float | None = Field(
        default=None, gt=0, description="p95 batch latency (ms) that rolls a new model back"
    )
    probation_min_confidence_ratio: float | None = Field(
        default=0.8,
        gt=0,
        description="mean confidence below this multiple of the previous model's rolls back",
    )
    probation_max_fallback_increase: float | None = Field(
        default=0.2,
        ge=0,
        le=1,
        description="rise in the share of windows sent to the cloud fallback that rolls back",
    )
    probation_max_drift_alerts: int | None = Field(
        default=None, ge=0, description="drift alerts during probation above this roll a new model back"
    )
    # -- shadow mode (an offer's shadow_s > 0, `ota install --shadow`): edgefleet/agent/ota_shadow.py
    shadow_share: float = Field(
        default=0.25, gt=0, le=1, description="share of windows the candidate also infers during a shadow run"
    )
    shadow_min_windows: int = Field(
        default=20, ge=1, description="windows a shadow run must compare, or the candidate is refused"
    )
    shadow_min_agreement: float | None = Field(
        default=0.8, ge=0, le=1, description="share of shadowed windows with the active model's top label"
    )
    shadow_min_confidence_ratio: float | None = Field(
        default=0.8, gt=0, description="candidate's mean confidence over the active model's, same windows"
    )
    shadow_max_latency_ratio: float | None = Field(
        default=None, gt=0, description="candidate's p95 batch latency over the active model's, same batches"
    )
    shadow_max_latency_ms: float | None = Field(
        default=None, gt=0, description="candidate's p95 batch latency (ms) during the shadow run"
    )
