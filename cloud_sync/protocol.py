"""Envelope and body models of the sync protocol (normative text: docs/protocol.md).

Every MQTT payload is one :class:`Envelope`: who sent it, what kind it is, its identity
(``message_id``, stable across resends so receivers de-duplicate by ``(device_id,
message_id, part)``), its ordering key ``seq`` (device clocks are never trusted for
ordering) and a typed body. :mod:`edgefleet.cloud_sync.codec` turns envelopes into bytes.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgefleet.cloud_sync.topics import MessageKind, validate_device_id
from edgefleet.types import AnsweredBy

__all__ = [
    "BODY_TYPES",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "AckBody",
    "Body",
    "ChannelDrift",
    "CommandBody",
    "CommandName",
    "ConfigBody",
    "DriftBody",
    "Envelope",
    "EventItem",
    "EventsBody",
    "InferRequestBody",
    "InferResponseBody",
    "MetricPoint",
    "OtaChunkBody",
    "OtaChunkRequestBody",
    "OtaOfferBody",
    "OtaProgressBody",
    "OtaState",
    "OutputDrift",
    "ResultItem",
    "ResultUpdateBody",
    "ResultsBody",
    "StatusBody",
    "TelemetryBody",
    "make_envelope",
]

SCHEMA_VERSION = 1
"""Version written by this code. Receivers refuse versions they do not know."""
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

_MAX_ID = 2**63 - 1  # fits a signed 64-bit column on the controller side


class _Model(BaseModel):
    # Bodies refuse unknown fields: a newer sender must bump the schema version instead.
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- uplink bodies


class ResultItem(_Model):
    """One inference result, as the agent store keeps it."""

    stream: str
    window_seq: int | None = None
    window_start: float
    window_end: float
    model_name: str
    model_version: str
    label: str | None = None
    score: float | None = None
    latency_ms: float
    answered_by: AnsweredBy = "edge"
    fallback_reason: str | None = None
    outputs: list[float] | None = None
    created_at: float | None = None


class ResultsBody(_Model):
    """A batch of results; on the wire it is columnar (see codec)."""

    results: list[ResultItem]


class MetricPoint(_Model):
    ts: float
    name: str
    value: float
    labels: dict[str, str] = Field(default_factory=dict)


class TelemetryBody(_Model):
    samples: list[MetricPoint]


class StatusBody(_Model):
    """Device state. Published retained; the broker publishes the ``offline`` last will."""

    state: Literal["online", "offline"]
    agent_version: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    hardware: dict[str, Any] = Field(default_factory=dict)
    uptime_s: float | None = None
    backlog: dict[str, int] = Field(default_factory=dict)
    outbox_floor: Annotated[int, Field(ge=1, le=_MAX_ID)] | None = None
    bytes_sent_by_kind: dict[str, int] = Field(default_factory=dict)
    fallback: dict[str, Any] | None = None
    """The cloud fallback router's figures (``CloudRouter.fallback_stats``); None without one."""
    # [device] name and tags (issue 16: campaigns target tags); None = not reported, keep what is known.
    name: Annotated[str, Field(max_length=128)] | None = None
    tags: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=32)] | None = (
        None
    )


class EventItem(_Model):
    ts: float
    kind: str
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    message: str
    data: dict[str, Any] | None = None


class EventsBody(_Model):
    events: list[EventItem]


class ChannelDrift(_Model):
    """One input channel of a drift report. ``drifted`` is the channel's alert state after
    hysteresis; drift_version 2 adds the other scores and the raw ``bins`` counts (in the
    bundle reference's bins) that receivers merge by addition."""

    channel: str
    mean: float | None
    std: float | None
    reference_mean: float | None = None
    reference_std: float | None = None
    psi: float | None = None
    drifted: bool = False
    js: float | None = None
    ks: float | None = None
    samples: int | None = Field(default=None, ge=0)
    nonfinite: int | None = Field(default=None, ge=0)
    over: list[str] = Field(default_factory=list)
    """Metrics over their threshold in this report (before hysteresis)."""
    bins: list[int] | None = None
    scale: float | None = None
    """Cross-channel statistics (docs/drift.md): the spread's change relative to the other
    channels', and the correlation gain from taking this channel for ``swap_with``."""
    swap: float | None = None
    swap_with: str | None = None


class OutputDrift(_Model):
    """The model's outputs in a drift report (classifiers): raw counts and their PSI against the
    reference's class distribution and top-class confidence histogram."""

    windows: int = Field(ge=0)
    class_psi: float | None = None
    confidence_psi: float | None = None
    classes: dict[str, int] = Field(default_factory=dict)
    confidence: list[int] = Field(default_factory=list)


class DriftBody(_Model):
    """A drift report. Version 1 (no ``drift_version``) had channels' mean/std/psi only; version 2
    adds ``report``, ``windows``, per-channel JS/KS/bins and ``outputs``; version 3 adds
    ``moments``. Every field added by a version has a default, so older bodies still validate."""

    stream: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    window_start: float
    window_end: float
    samples: int = 0
    channels: list[ChannelDrift] = Field(default_factory=list)
    psi: float | None = None
    drifted: bool = False
    drift_version: Literal[1, 2, 3] = 1
    report: int | None = Field(default=None, ge=0)
    windows: int | None = Field(default=None, ge=0)
    skipped_windows: int | None = Field(default=None, ge=0)
    """Windows inferred while the report was open but not counted (the agent's CPU budget)."""
    outputs: OutputDrift | None = None
    moments: list[float] | None = None
    """Version 3: the upper triangle, row by row, of the ``(C + 1, C + 1)`` sums of ``[1, x] [1, x]^T``
    over the report's rows where every channel is finite (row count, sums, cross products;
    :func:`edgefleet.runtime.drift_cross.pack_moments`), so receivers can merge the cross-channel
    statistics by addition too. None when the report has no channels."""

    @model_validator(mode="after")
    def _moments_fit(self) -> DriftBody:
        if self.moments is None:
            return self
        if self.drift_version < 3:
            raise ValueError(f"moments need drift_version 3; got {self.drift_version}")
        size = len(self.channels) + 1
        if len(self.moments) != size * (size + 1) // 2:
            raise ValueError(
                f"{len(self.moments)} moments do not fit {len(self.channels)} channels;"
                f" expected {size * (size + 1) // 2}"
            )
        return self


OtaState: TypeAlias = Literal[
    "received",
    "downloading",
    "downloaded",
    "verifying",
    "validating",
    "shadow",
    "activating",
    "probation",
    "done",
    "failed",
    "rolled_back",
    "refused",
]
"""``done``: probation passed, committed; ``failed``/``refused`` carry the reason in ``detail``;
``rolled_back``: by probation or by command, ``detail`` says why (docs/ota.md)."""

_SHA256 = r"^[0-9a-f]{64}$"
_OFFER_ID = Annotated[str, Field(min_length=1, max_length=128)]


class OtaProgressBody(_Model):
    offer_id: _OFFER_ID
    campaign_id: str | None = None
    state: OtaState
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    detail: str | None = None
    bundle_version: str | None = None
    metrics: dict[str, Any] | None = None


class OtaChunkRequestBody(_Model):
    """The device asks for these chunks of an offer (it lacks them; at most one window at a time)."""

    offer_id: _OFFER_ID
    indices: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=1024)


class InferRequestBody(_Model):
    """A window the edge model could not answer, sent for a cloud answer."""

    request_id: str
    stream: str
    window_seq: int | None = None
    window_start: float
    window_end: float
    shape: list[int]
    dtype: Literal["float32"] = "float32"
    data: bytes
    fallback_reason: str
    edge_label: str | None = None
    """The edge model's answer (None: no edge model), kept with the cloud's as a hard example."""
    edge_score: float | None = None


class ResultUpdateBody(_Model):
    """A late cloud answer attached to a result the device stored (and may have sent) before:
    the edge answer stays the real-time decision; ``result_id`` (the device store's id) names
    the result, so receivers apply an update once whatever the ``message_id`` it came in."""

    result_id: int = Field(ge=1, le=_MAX_ID)
    stream: str
    window_seq: int | None = None
    window_end: float
    edge_label: str | None = None
    edge_model_version: str
    fallback_reason: str | None = None
    cloud_label: str
    cloud_score: float | None = None
    cloud_model_version: str | None = None


# ---------------------------------------------------------------- downlink bodies

CommandName: TypeAlias = Literal[
    "restart_pipeline", "set_config", "report_status", "flush_outbox", "ping", "rollback_model"
]


class CommandBody(_Model):
    command_id: str
    command: CommandName
    args: dict[str, Any] = Field(default_factory=dict)
    expires_at: float | None = None


class ConfigBody(_Model):
    """A configuration patch (same keys as the agent config) with a controller version number."""

    config_version: int = Field(ge=0)
    config: dict[str, Any]


class OtaOfferBody(_Model):
    """A bundle ``.tar`` offered to one device: its chunk plan over MQTT, or an HTTP(S) ``url``."""

    offer_id: _OFFER_ID
    campaign_id: str | None = None
    device_id: str
    """The target; an agent refuses an offer naming another device."""
    bundle_name: str = Field(min_length=1)
    bundle_version: str = Field(min_length=1)
    sha256: str = Field(pattern=_SHA256)
    size_bytes: int = Field(ge=1)
    chunk_bytes: int = Field(ge=1)
    chunk_count: int = Field(ge=1)
    chunk_sha256: list[Annotated[str, Field(pattern=_SHA256)]]
    url: str | None = None
    allow_downgrade: bool = False
    shadow_s: float = Field(default=0.0, ge=0.0)
    expires_at: float | None = None

    @model_validator(mode="after")
    def _plan(self) -> OtaOfferBody:
        expected = -(-self.size_bytes // self.chunk_bytes)
        if self.chunk_count != expected or len(self.chunk_sha256) != expected:
            raise ValueError(
                f"{self.size_bytes} bytes in chunks of {self.chunk_bytes} make {expected} chunks; the offer"
                f" says chunk_count {self.chunk_count} with {len(self.chunk_sha256)} chunk hashes"
            )
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be http:// or https://, got {self.url[:40]!r}")
        return self


class OtaChunkBody(_Model):
    """One chunk of an offered bundle; ``sha256`` is the chunk's (the device checks it against the
    offer's ``chunk_sha256``, not against this field alone)."""

    offer_id: _OFFER_ID
    index: int = Field(ge=0)
    data: bytes
    sha256: str = Field(pattern=_SHA256)


class InferResponseBody(_Model):
    request_id: str
    model_name: str | None = None
    model_version: str | None = None
    label: str | None = None
    score: float | None = None
    outputs: list[float] | None = None
    error: str | None = None


class AckBody(_Model):
    """The controller stored (or already had) these uplink messages: the device may forget them.

    ``ranges``: inclusive ``[first, last]`` ``message_id`` ranges whose every part is stored.
    ``parts``: ``[message_id, part]`` pairs of multi-part rows acknowledged part by part.
    """

    ranges: list[tuple[Annotated[int, Field(ge=1, le=_MAX_ID)], Annotated[int, Field(ge=1, le=_MAX_ID)]]] = (
        Field(default_factory=list)
    )
    parts: list[tuple[Annotated[int, Field(ge=1, le=_MAX_ID)], Annotated[int, Field(ge=0)]]] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _ordered(self) -> AckBody:
        for first, last in self.ranges:
            if last < first:
                raise ValueError(f"ack range [{first}, {last}] ends before it starts")
        return self


Body: TypeAlias = (
    ResultsBody
    | TelemetryBody
    | StatusBody
    | EventsBody
    | DriftBody
    | OtaProgressBody
    | InferRequestBody
    | ResultUpdateBody
    | CommandBody
    | ConfigBody
    | OtaOfferBody
    | InferResponseBody
    | AckBody
    | OtaChunkRequestBody
    | OtaChunkBody
)

BODY_TYPES: dict[str, type[Body]] = {
    "status": StatusBody,
    "telemetry": TelemetryBody,
    "results": ResultsBody,
    "drift": DriftBody,
    "events": EventsBody,
    "ota/progress": OtaProgressBody,
    "infer/request": InferRequestBody,
    "result_update": ResultUpdateBody,
    "cmd": CommandBody,
    "config": ConfigBody,
    "ota/offer": OtaOfferBody,
    "infer/response": InferResponseBody,
    "ack": AckBody,
    "ota/chunk_request": OtaChunkRequestBody,
    "ota/chunk": OtaChunkBody,
}


class Envelope(BaseModel):
    """One protocol message.

    ``message_id``: for stored uplink messages, the agent store's outbox row id (never reused);
    ``0`` marks a message that is not stored and not de-duplicated (live status, last will).
    ``part``/``parts``: an outbox row too big for one MQTT message travels as several parts.
    ``seq``: per-device ordering key (the outbox row id for stored messages); receivers order by
    it, never by ``created_at``/``sent_at`` which come from the device clock.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    message_id: Annotated[int, Field(ge=0, le=_MAX_ID)]
    device_id: str
    kind: MessageKind
    seq: Annotated[int, Field(ge=0, le=_MAX_ID)] = 0
    part: Annotated[int, Field(ge=0)] = 0
    parts: Annotated[int, Field(ge=1)] = 1
    created_at: float
    sent_at: float | None = None
    body: Body

    @model_validator(mode="after")
    def _check(self) -> Envelope:
        validate_device_id(self.device_id)
        expected = BODY_TYPES[self.kind]
        if not isinstance(self.body, expected):
            raise ValueError(
                f"body of a {self.kind!r} message must be {expected.__name__}, got {type(self.body).__name__}"
            )
        if self.part >= self.parts:
            raise ValueError(f"part {self.part} out of range for parts={self.parts}")
        return self

    @property
    def dedup_key(self) -> tuple[str, int, int]:
        """What receivers de-duplicate on. Meaningless when ``message_id == 0``."""
        return (self.device_id, self.message_id, self.part)


def make_envelope(
    device_id: str,
    kind: MessageKind,
    body: Body | dict[str, Any],
    *,
    message_id: int = 0,
    seq: int | None = None,
    created_at: float | None = None,
) -> Envelope:
    """Build an envelope; ``body`` may be a model or a plain dict validated as ``kind``'s body."""
    if isinstance(body, dict):
        body = BODY_TYPES[kind].model_validate(body)
    return Envelope(
        message_id=message_id,
        device_id=device_id,
        kind=kind,
        seq=message_id if seq is None else seq,
        created_at=time.time() if created_at is None else created_at,
        body=body,
    )
