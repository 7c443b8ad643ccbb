"""Decoding sensor frames from datagrams and MQTT payloads.

Two wire formats, chosen per source with ``format``:

``json``
    UTF-8, one sample per line (newline-delimited; one payload may hold many lines).
    A line is either an object ``{"ts": 1700000000.25, "values": [0.1, 0.2, 0.3]}``
    (``ts`` optional, epoch seconds) or a bare list ``[0.1, 0.2, 0.3]``. Samples
    without ``ts`` are stamped with the time the payload was received.

``packed``
    Little-endian records laid back to back, ``len(payload)`` a multiple of the record
    size. A record is ``channels`` float32 values, preceded by one float64 epoch-seconds
    timestamp when ``timestamped = true`` (record size ``8 + 4*channels`` bytes, else
    ``4*channels``). Untimestamped records are stamped with the receive time.

Whatever cannot be read - a line that is not JSON, the wrong number of values, a
non-number, NaN or infinity, a payload whose length is not a whole number of records -
is counted in :class:`Decoded.bad` with a reason and never appears in the samples.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from edgefleet.types import FloatArray

__all__ = ["Decoded", "FrameDecoder", "FrameFormat"]

FrameFormat = Literal["json", "packed"]

FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Decoded:
    """Good samples of one payload, plus how many were refused and why."""

    samples: FloatArray
    timestamps: npt.NDArray[np.float64]
    bad: int = 0
    reasons: list[str] = field(default_factory=list)


def _empty(channels: int) -> tuple[FloatArray, npt.NDArray[np.float64]]:
    return np.empty((0, channels), np.float32), np.empty((0,), np.float64)


def _is_number(value: object) -> bool:
    # bool is an int subclass; a sensor value of `true` is a malformed frame, not 1.0
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FrameDecoder:
    """Turns one payload (datagram or MQTT message) into samples of ``channels`` values."""

    MAX_REASONS = 3  # per payload; enough to diagnose, bounded for a flood of garbage

    def __init__(self, channels: int, fmt: FrameFormat = "json", *, timestamped: bool = False) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        self.format: FrameFormat = fmt
        self.timestamped = timestamped
        self._record = np.dtype(
            [("ts", "<f8"), ("values", "<f4", (channels,))]
            if timestamped
            else [("values", "<f4", (channels,))]
        )

    @property
    def record_size(self) -> int:
        """Bytes per packed record."""
        return self._record.itemsize

    def decode(self, payload: bytes | bytearray, received_at: float) -> Decoded:
        if self.format == "packed":
            return self._decode_packed(payload, received_at)
        return self._decode_json(payload, received_at)

    # -- packed -----------------------------------------------------------------------------------
    def _decode_packed(self, payload: bytes | bytearray, received_at: float) -> Decoded:
        size = self.record_size
        if not payload or len(payload) % size:
            samples, times = _empty(self.channels)
            layout = "float64 timestamp + " if self.timestamped else ""
            reason = (
                f"packed frame of {len(payload)} bytes is not a whole number of {size}-byte records "
                f"({layout}{self.channels} float32)"
            )
            return Decoded(samples, times, bad=max(1, len(payload) // size), reasons=[reason])
        records = np.frombuffer(payload, dtype=self._record)
        samples = records["values"].astype(np.float32)
        if self.timestamped:
            times = records["ts"].astype(np.float64)
        else:
            times = np.full(records.shape[0], received_at, np.float64)
        good = np.isfinite(samples).all(axis=1) & np.isfinite(times)
        n_bad = int(good.size - np.count_nonzero(good))
        if n_bad:
            return Decoded(
                samples[good], times[good], bad=n_bad, reasons=["NaN or infinite value or timestamp"]
            )
        return Decoded(samples, times)

    # -- json ------------------------------------------------------------------------------------
    def _decode_json(self, payload: bytes | bytearray, received_at: float) -> Decoded:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            samples, times = _empty(self.channels)
            return Decoded(samples, times, bad=1, reasons=[f"payload is not UTF-8 text: {exc.reason}"])
        rows: list[list[float]] = []
        stamps: list[float] = []
        bad = 0
        reasons: list[str] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            parsed = self._parse_line(line, received_at)
            if isinstance(parsed, str):
                bad += 1
                if len(reasons) < self.MAX_REASONS:
                    reasons.append(parsed)
                continue
            rows.append(parsed[0])
            stamps.append(parsed[1])
        if not rows and bad == 0:
            bad, reasons = 1, ["empty payload; expected JSON samples, one per line"]
        if rows:
            samples = np.asarray(rows, dtype=np.float32)
            times = np.asarray(stamps, dtype=np.float64)
        else:
            samples, times = _empty(self.channels)
        return Decoded(samples, times, bad=bad, reasons=reasons)

    def _parse_line(self, line: str, received_at: float) -> tuple[list[float], float] | str:
        """The sample and timestamp of one line, or why it was refused."""
        shown = line if len(line) <= 80 else line[:77] + "..."
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            return f"not JSON ({exc.msg if isinstance(exc, json.JSONDecodeError) else exc}): {shown!r}"
        ts: object = received_at
        if isinstance(obj, dict):
            values = obj.get("values")
            if "ts" in obj:
                ts = obj["ts"]
            unknown = set(obj) - {"ts", "values"}
            if values is None or unknown:
                return f'expected {{"ts": <seconds>, "values": [...]}} or a bare list, got {shown!r}'
        elif isinstance(obj, list):
            values = obj
        else:
            return f'expected {{"ts": <seconds>, "values": [...]}} or a bare list, got {shown!r}'
        if not isinstance(values, list) or len(values) != self.channels:
            count = len(values) if isinstance(values, list) else "no list of"
            return f"{count} values; expected {self.channels}: {shown!r}"
        if not all(_is_number(v) and math.isfinite(v) for v in values):
            return f"values must be finite numbers: {shown!r}"
        if any(abs(v) > FLOAT32_MAX for v in values):
            return f"value out of float32 range: {shown!r}"
        if not (_is_number(ts) and math.isfinite(ts)):  # type: ignore[arg-type]
            return f"ts must be a finite number of epoch seconds: {shown!r}"
        return [float(v) for v in values], float(ts)  # type: ignore[arg-type]
