"""The bundle manifest (``manifest.json``, schema_version 3; 1 and 2 still load) as pydantic models.

Schema 2 adds the drift reference's confidence histogram (``reference.outputs[].confidence_*``),
schema 3 the channels' ``reference.correlation`` matrix; an older manifest carrying either is
rejected, so a version always says what a manifest may hold.

Every model is ``extra="forbid"``: an unknown key is an error, so a typo never silently turns a
setting off. :func:`parse_manifest` turns any JSON or validation failure into one
:class:`~edgefleet.errors.BundleError` listing every bad key.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgefleet.errors import BundleError
from edgefleet.runtime.profile import ReferenceProfile

__all__ = [
    "HINT_REBUILD",
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "BundleManifest",
    "CanaryCase",
    "FileRef",
    "ModelFileSpec",
    "Preprocessing",
    "Task",
    "TensorEntry",
    "manifest_bytes",
    "parse_manifest",
]

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION: Literal[3] = 3
SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3)
Task = Literal["classification", "regression", "detection", "raw"]

# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
HINT_REBUILD = "rebuild the bundle with `edgefleet bundle build`, or fetch an intact copy"


def _relative_file(value: str) -> str:
    p = PurePosixPath(value)
    if not value or p.is_absolute() or ".." in p.parts or "\\" in value or len(p.parts) != 1:
        raise ValueError(f"{value!r} must be a plain file name inside the bundle (no directories, no '..')")
    return value


class FileRef(BaseModel):
    """A file inside the bundle directory with its expected size and sha256."""

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str
    size_bytes: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _relative_file(v)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        if not _SHA256.match(v):
            raise ValueError("expected 64 lowercase hex digits")
        return v


class ModelFileSpec(FileRef):
    format: Literal["tflite", "onnx"]


class TensorEntry(BaseModel):
    """A model tensor as the bundle promises it: ``None`` marks a dynamic dimension;
    ``dtype`` is the tensor's own dtype (``int8`` for a quantized one; callers still see float32)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int | None]
    dtype: str


class Preprocessing(BaseModel):
    """How raw samples become model input: windows of ``window_length`` every ``hop`` samples,
    each channel normalized as ``(x - mean) / std``."""

    model_config = ConfigDict(extra="forbid")

    window_length: int = Field(gt=0)
    hop: int = Field(gt=0)
    channels: int = Field(gt=0)
    channel_names: list[str]
    sample_rate_hz: float = Field(gt=0)
    mean: list[float]
    std: list[float]

    @model_validator(mode="after")
    def _lengths(self) -> Preprocessing:
        bad = [
            f"{key} has {len(getattr(self, key))} entries"
            for key in ("channel_names", "mean", "std")
            if len(getattr(self, key)) != self.channels
        ]
        if bad:
            raise ValueError(f"{'; '.join(bad)}; expected channels = {self.channels} each")
        if any(not (s > 0 and np.isfinite(s)) for s in self.std):
            raise ValueError(f"std must be finite and > 0 for every channel; got {self.std}")
        if len(set(self.channel_names)) != self.channels:
            raise ValueError(f"channel_names must be unique; got {self.channel_names}")
        return self


class CanaryCase(BaseModel):
    """Row ``index`` of ``canary.npz["inputs"]`` (raw, before preprocessing) must give ``expected``
    (per output name, flattened) within ``tolerance`` (max absolute difference), and, for
    classification, the label ``expected_label``."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    expected: dict[str, list[float]]
    expected_label: str | None = None
    tolerance: float = Field(ge=0)


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1, 2, 3] = SCHEMA_VERSION
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str
    task: Task
    description: str = ""
    created_at: datetime
    model: ModelFileSpec
    inputs: list[TensorEntry] = Field(min_length=1)
    outputs: list[TensorEntry] = Field(min_length=1)
    labels: list[str] = Field(default_factory=list)
    preprocessing: Preprocessing
    reference: ReferenceProfile | None = None
    canary_file: FileRef | None = None
    canary: list[CanaryCase] = Field(default_factory=list)

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not _SEMVER.match(v):
            raise ValueError(f"{v!r} is not a semantic version; expected MAJOR.MINOR.PATCH such as 1.0.0")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> BundleManifest:
        problems: list[str] = []
        if self.task == "classification" and not self.labels:
            problems.append("task 'classification' needs labels")
        if len(set(self.labels)) != len(self.labels):
            problems.append(f"labels must be unique; got {self.labels}")
        if self.canary and self.canary_file is None:
            problems.append("canary cases are listed but canary_file is missing")
        if (
            self.reference is not None
            and self.schema_version < 2
            and any(o.confidence_histogram is not None for o in self.reference.outputs)
        ):
            problems.append("reference.outputs[].confidence_histogram needs schema_version 2")
        if self.reference is not None and self.schema_version < 3 and self.reference.correlation is not None:
            problems.append("reference.correlation needs schema_version 3")
        if self.reference is not None:
            names = [c.name for c in self.reference.channels]
            if names != self.preprocessing.channel_names:
                problems.append(
                    f"reference channels {names} differ from preprocessing.channel_names "
                    f"{self.preprocessing.channel_names}"
                )
        output_names = {o.name for o in self.outputs}
        for case in self.canary:
            unknown = sorted(set(case.expected) - output_names)
            if unknown:
                problems.append(f"canary {case.index} expects unknown outputs {unknown}")
            if case.expected_label is not None and case.expected_label not in self.labels:
                problems.append(f"canary {case.index} expects label {case.expected_label!r} not in labels")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _format_validation(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "manifest"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key (not part of schema_version {SCHEMA_VERSION})"
        elif err["type"] == "missing":
            msg = "required key is missing"
        out.append(f"{loc}: {msg}")
    return out


def parse_manifest(text: str, *, source: str = MANIFEST_NAME) -> BundleManifest:
    """Parse and validate manifest JSON; BundleError lists every invalid key."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"{source} is not valid JSON: {exc}", path=source, hint="the manifest is damaged; " + HINT_REBUILD
        ) from exc
    if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(
            f"{source}: schema_version {data.get('schema_version')!r} is not supported; expected 1, 2 or 3",
            path=source,
            hint="upgrade edgefleet, or rebuild the bundle with this version",
        )
    try:
        return BundleManifest.model_validate(data)
    except ValidationError as exc:
        raise BundleError(
            f"{source} is not a valid bundle manifest",
            path=source,
            problems=_format_validation(exc),
            hint="fix the listed keys, or rebuild the bundle with `edgefleet bundle build`",
        ) from exc


def manifest_bytes(manifest: BundleManifest) -> bytes:
    """Canonical manifest encoding: schema field order, 2-space indent, trailing newline."""
    data = manifest.model_dump(mode="json")
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")
