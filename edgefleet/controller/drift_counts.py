"""Fleet drift: the raw counts of version 2 and 3 drift reports, merged by addition and scored once.

Ingest keeps each report's counts as one JSON object (:func:`counts_of_body`); a version 3
report's cross-channel moments join them under ``moments``, so ``swap`` merges by addition too. A fleet, model
version or device query sums the counts of every report in range with
:class:`~edgefleet.runtime.drift_stats.DriftCounts` ``+`` and scores the sum against the model
version's reference profile with the device's own pure function
(:func:`~edgefleet.runtime.drift_stats.score_counts`), so a merged score is the score of the
concatenated data, never an average of report scores. Reports whose bins do not fit the first
report of their model version (a different profile under the same version) are left out and
counted, never mixed in. ``swap`` is scored from the moments of the reports that carry them
(version 3), and the group says how many did; ``scale`` needs only each channel's spread, which
every version 2 report carries.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from edgefleet.cloud_sync.protocol import DriftBody
from edgefleet.runtime.drift_cross import unpack_moments
from edgefleet.runtime.drift_stats import DriftCounts, coarsen, score_counts
from edgefleet.runtime.profile import ReferenceProfile
from edgefleet.types import JSONValue

__all__ = [
    "DriftCountsRow",
    "FleetDrift",
    "FleetDriftChannel",
    "FleetDriftGroup",
    "Thresholds",
    "counts_of_body",
    "decode_bins",
    "drift_counts_of",
    "encode_bins",
    "merge_drift",
]


IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Thresholds:
    """The scores a merged channel is reported ``over`` at (the agent's defaults unless configured)."""

    psi: float = 0.1
    js: float = 0.15
    ks: float = 0.15
    scale: float = 0.2
    swap: float = 0.3


@dataclass(frozen=True)
class DriftCountsRow:
    """One stored version 2 report's counts, as the database returns them."""

    device_id: str
    ts: float
    model_name: str | None
    model_version: str | None
    counts: dict[str, Any]


def counts_of_body(body: DriftBody) -> dict[str, JSONValue] | None:
    """The raw counts of a version 2 or 3 report (None for version 1, or when a channel has no bins).

    ``sums``/``sumsq`` are rebuilt from each channel's mean and std over its finite samples, so they
    merge by addition like the bins. A version 3 report's ``moments`` are kept as sent (packed);
    non-finite ones (a sender bug) are dropped, and the report merges without them.
    """
    if body.drift_version < 2 or not body.channels or any(c.bins is None for c in body.channels):
        return None
    widths = {len(c.bins or []) for c in body.channels}
    if len(widths) != 1 or any(v < 0 for c in body.channels for v in c.bins or []):
        # Not mergeable (a sender bug): the report is kept with its scores, left out of merges.
        return None
    sums: list[JSONValue] = []
    sumsq: list[JSONValue] = []
    for c in body.channels:
        n = sum(c.bins or [])
        mean = c.mean if c.mean is not None else 0.0
        std = c.std if c.std is not None else 0.0
        sums.append(mean * n)
        sumsq.append((std * std + mean * mean) * n)
    outputs = body.outputs
    stored: dict[str, JSONValue] = {
        "channels": [c.channel for c in body.channels],
        "bins": encode_bins([c.bins or [] for c in body.channels]),
        "sums": sums,
        "sumsq": sumsq,
        "nonfinite": [c.nonfinite or 0 for c in body.channels],
        "labels": list(outputs.classes) if outputs is not None else [],
        "classes": list(outputs.classes.values()) if outputs is not None else [],
        "confidence": list(outputs.confidence) if outputs is not None else [],
    }
    if body.moments is not None:
        try:
            unpack_moments(body.moments, len(body.channels))
        except ValueError:
            return stored
        stored["moments"] = encode_moments(body.moments)
    return stored


def encode_moments(packed: Sequence[float]) -> dict[str, JSONValue]:
    """Packed moments (:func:`~edgefleet.runtime.drift_cross.pack_moments`) as stored: little-endian
    float64, base64. Parsing them as JSON numbers cost a merge more than the bins did."""
    raw = np.asarray(packed, dtype="<f8").tobytes()
    return {"f64_b64": base64.b64encode(raw).decode("ascii")}


def _moment_bytes(stored: Any, size: int) -> bytes:
    if not isinstance(stored, dict) or not isinstance(stored.get("f64_b64"), str):
        raise ValueError("stored moments are malformed")
    raw = base64.b64decode(stored["f64_b64"], validate=True)
    if len(raw) != 8 * size:
        raise ValueError(f"stored moments are {len(raw)} bytes; expected {8 * size}")
    return raw


def drift_counts_of(counts: dict[str, Any], *, moments: bool = True) -> DriftCounts:
    """The stored JSON counts as :class:`DriftCounts` (raises ValueError on a malformed object);
    ``moments=False`` leaves the moments out (a merge sums them packed, see :func:`merge_drift`)."""
    try:
        bins = decode_bins(counts["bins"])
        return DriftCounts(
            bins=bins,
            sums=np.asarray(counts["sums"], dtype=np.float64),
            sumsq=np.asarray(counts["sumsq"], dtype=np.float64),
            nonfinite=np.asarray(counts["nonfinite"], dtype=np.int64),
            classes=np.asarray(counts.get("classes", []), dtype=np.int64),
            confidence=np.asarray(counts.get("confidence", []), dtype=np.int64),
            moments=None
            if not moments or counts.get("moments") is None
            else _unpack_stored(counts["moments"], bins.shape[0]),
        )
    except (KeyError, TypeError, binascii.Error, zlib.error) as exc:
        raise ValueError(f"stored drift counts are malformed: {exc}") from exc


def _unpack_stored(stored: Any, channels: int) -> npt.NDArray[np.float64]:
    size = (channels + 1) * (channels + 2) // 2
    packed = np.frombuffer(_moment_bytes(stored, size), dtype="<f8")
    return unpack_moments(packed.tolist(), channels)


def encode_bins(bins: Sequence[Sequence[int]]) -> dict[str, JSONValue]:
    """Per-channel bin counts as stored: little-endian uint32, zlib, base64, with their shape.

    A merge reads every report in range; decoding this is several times quicker than reading
    hundreds of JSON numbers per report, and it is smaller.
    """
    array = np.asarray(bins, dtype="<u4")
    packed = base64.b64encode(zlib.compress(array.tobytes(), 6)).decode("ascii")
    return {"shape": [int(n) for n in array.shape], "u32_zlib_b64": packed}


def decode_bins(stored: dict[str, Any]) -> IntArray:
    """The (channels, bins) int64 counts of :func:`encode_bins`; ValueError when they do not fit."""
    shape = tuple(int(n) for n in stored["shape"])
    raw = zlib.decompress(base64.b64decode(stored["u32_zlib_b64"], validate=True))
    if len(shape) != 2 or len(raw) != 4 * shape[0] * shape[1]:
        raise ValueError(f"stored bins do not fit their shape {shape}")
    decoded: IntArray = np.frombuffer(raw, dtype="<u4").reshape(shape).astype(np.int64)
    return decoded


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FleetDriftChannel(_Out):
    name: str
    samples: int
    nonfinite: int
    mean: float | None
    std: float | None
    reference_mean: float | None = None
    reference_std: float | None = None
    psi: float | None = None
    js: float | None = None
    ks: float | None = None
    scale: float | None = None
    """Spread change relative to the other channels' (``edgefleet.runtime.drift_cross``)."""
    swap: float | None = None
    """Correlation gain from taking this channel for ``swap_with`` (from the reports with moments)."""
    swap_with: str | None = None
    over: list[str] = []
    """Metrics of the merged counts over the controller's thresholds."""
    live: list[float]
    """Fraction of the merged live samples per reference decile (the bins PSI and JS use)."""
    reference: list[float] | None = None
    """The reference's fraction per decile (None without a reference profile)."""


class FleetDriftOutputs(_Out):
    windows: int
    labels: list[str]
    classes: list[int]
    confidence: list[int]
    class_psi: float | None = None
    confidence_psi: float | None = None


class FleetDriftGroup(_Out):
    """Every report of one model version in range, merged."""

    model_name: str | None
    model_version: str | None
    reports: int
    devices: list[str]
    first_ts: float
    last_ts: float
    scored: bool
    reason: str | None = None
    """Why the merged counts are not scored (no reference profile on the controller)."""
    skipped_reports: int = 0
    """Reports of this version whose bins did not fit the others (left out, not mixed in)."""
    moment_reports: int = 0
    """Merged reports that carry cross-channel moments (version 3): ``swap`` is scored from these
    only, and is None when there are none."""
    channels: list[FleetDriftChannel]
    outputs: FleetDriftOutputs | None = None


class FleetDrift(_Out):
    since: float
    until: float
    device_id: str | None = None
    groups: list[FleetDriftGroup]


ReferenceLookup = Callable[[str | None, str | None], ReferenceProfile | None]


def merge_drift(
    rows: Sequence[DriftCountsRow],
    references: ReferenceLookup,
    thresholds: Thresholds,
    *,
    since: float,
    until: float,
    device_id: str | None = None,
) -> FleetDrift:
    """Merge ``rows`` per model version by addition and score each sum against its reference."""
    by_version: dict[tuple[str | None, str | None], list[DriftCountsRow]] = {}
    for row in rows:
        by_version.setdefault((row.model_name, row.model_version), []).append(row)
    groups = [
        _group(name, version, group, references(name, version), thresholds)
        for (name, version), group in sorted(
            by_version.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")
        )
    ]
    return FleetDrift(since=since, until=until, device_id=device_id, groups=groups)


def _group(
    name: str | None,
    version: str | None,
    rows: list[DriftCountsRow],
    reference: ReferenceProfile | None,
    thresholds: Thresholds,
) -> FleetDriftGroup:
    first = rows[0].counts
    channel_names: list[str] = list(first.get("channels", []))
    labels: list[str] = list(first.get("labels", []))
    total: DriftCounts | None = None
    packed: list[bytes] = []
    size = (len(channel_names) + 1) * (len(channel_names) + 2) // 2
    used: list[DriftCountsRow] = []
    skipped = 0
    for row in rows:
        try:
            # Moments are summed apart, packed (one matrix is rebuilt at the end, not one per
            # report), and a version 2 report among version 3 ones must not drop them all
            # (DriftCounts + keeps moments only when both sides have them).
            counts = drift_counts_of(row.counts, moments=False)
            if (
                list(row.counts.get("channels", [])) != channel_names
                or list(row.counts.get("labels", [])) != labels
            ):
                raise ValueError("different channels or labels")
            stored = row.counts.get("moments")
            own = None if stored is None else _moment_bytes(stored, size)
            total = counts if total is None else total + counts
        except (ValueError, binascii.Error):
            skipped += 1
            continue
        if own is not None:
            packed.append(own)
        used.append(row)
    moment_reports = len(packed)
    if total is not None and packed:
        summed = np.frombuffer(b"".join(packed), dtype="<f8").reshape(-1, size).sum(axis=0)
        total = replace(total, moments=unpack_moments(summed.tolist(), len(channel_names)))
    reason = None
    if reference is not None and [c.name for c in reference.channels] != channel_names:
        reason = (
            f"the controller's reference profile for {name} {version} has other channels than the reports"
        )
        reference = None
    elif (
        reference is not None
        and total is not None
        and total.bins.shape[1] != len(reference.channels[0].histogram)
    ):
        reason = f"the controller's reference profile for {name} {version} has other bins than the reports"
        reference = None
    elif reference is None:
        reason = (
            f"no reference profile for {name} {version} on the controller; add its bundle's directory"
            " to [drift] reference_bundles in the controller config"
        )
    channels: list[FleetDriftChannel] = []
    outputs: FleetDriftOutputs | None = None
    if total is not None:
        channels, outputs = _score(total, channel_names, labels, reference, thresholds)
    return FleetDriftGroup(
        model_name=name,
        model_version=version,
        reports=len(used),
        devices=sorted({r.device_id for r in used}),
        first_ts=min((r.ts for r in used), default=0.0),
        last_ts=max((r.ts for r in used), default=0.0),
        scored=reference is not None and total is not None,
        reason=reason,
        skipped_reports=skipped,
        moment_reports=moment_reports,
        channels=channels,
        outputs=outputs,
    )


def _fractions(values: np.ndarray[Any, Any]) -> list[float]:
    total = float(values.sum())
    return [float(v) / total if total > 0 else 0.0 for v in values]


def _score(
    total: DriftCounts,
    names: list[str],
    labels: list[str],
    reference: ReferenceProfile | None,
    thresholds: Thresholds,
) -> tuple[list[FleetDriftChannel], FleetDriftOutputs | None]:
    outputs = None
    if total.classes.size:
        outputs = FleetDriftOutputs(
            windows=total.windows,
            labels=labels,
            classes=[int(v) for v in total.classes],
            confidence=[int(v) for v in total.confidence],
        )
    if reference is None:
        channels = []
        for c, name in enumerate(names):
            n = int(total.bins[c].sum())
            mean = float(total.sums[c] / n) if n else None
            std = (
                float(np.sqrt(max(0.0, float(total.sumsq[c] / n) - mean * mean)))
                if mean is not None
                else None
            )
            channels.append(
                FleetDriftChannel(
                    name=name,
                    samples=n,
                    nonfinite=int(total.nonfinite[c]),
                    mean=mean,
                    std=std,
                    live=_fractions(coarsen(total.bins[c].astype(np.float64))),
                )
            )
        return channels, outputs
    scores = score_counts(reference, total, labels)
    channels = []
    for c, score in enumerate(scores.channels):
        over = [
            metric
            for metric, value, limit in (
                ("psi", score.psi, thresholds.psi),
                ("js", score.js, thresholds.js),
                ("ks", score.ks, thresholds.ks),
                ("scale", score.scale, thresholds.scale),
                ("swap", score.swap, thresholds.swap),
            )
            if value is not None and value > limit
        ]
        channels.append(
            FleetDriftChannel(
                name=score.name,
                samples=score.samples,
                nonfinite=score.nonfinite,
                mean=score.mean,
                std=score.std,
                reference_mean=score.reference_mean,
                reference_std=score.reference_std,
                psi=score.psi,
                js=score.js,
                ks=score.ks,
                scale=score.scale,
                swap=score.swap,
                swap_with=score.swap_with,
                over=over,
                live=_fractions(coarsen(total.bins[c].astype(np.float64))),
                reference=_fractions(coarsen(np.asarray(reference.channels[c].histogram, dtype=np.float64))),
            )
        )
    if outputs is not None and scores.outputs is not None:
        outputs.class_psi = scores.outputs.class_psi
        outputs.confidence_psi = scores.outputs.confidence_psi
    return channels, outputs
