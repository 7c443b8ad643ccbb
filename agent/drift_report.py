"""What the drift monitor reports: its settings, one closed report, alerts and per-channel hysteresis.

Split from :mod:`edgefleet.agent.drift_monitor` (which counts windows and closes reports) and
re-exported there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from edgefleet.agent.config import DriftConfig
from edgefleet.runtime.drift_cross import pack_moments
from edgefleet.runtime.drift_stats import ChannelScore, DriftCounts, DriftScores

__all__ = ["METRICS", "ChannelState", "DriftAlert", "DriftReport", "DriftSettings"]

METRICS = ("psi", "js", "ks", "scale", "swap")


@dataclass(frozen=True)
class DriftSettings:
    """The ``[drift]`` keys the monitor uses (``enabled`` is the caller's business)."""

    interval_s: float = 300.0
    windows: int = 256
    min_interval_s: float = 60.0
    sample: bool = True
    psi_threshold: float = 0.1
    js_threshold: float = 0.15
    ks_threshold: float = 0.15
    scale_threshold: float = 0.2
    swap_threshold: float = 0.3
    alert_after: int = 2
    clear_after: int = 3
    min_samples: int = 1000

    @classmethod
    def from_config(cls, config: DriftConfig) -> DriftSettings:
        return cls(
            interval_s=config.interval_s,
            windows=config.windows,
            min_interval_s=config.min_interval_s,
            sample=config.sample,
            psi_threshold=config.psi_threshold,
            js_threshold=config.js_threshold,
            ks_threshold=config.ks_threshold,
            scale_threshold=config.scale_threshold,
            swap_threshold=config.swap_threshold,
            alert_after=config.alert_after,
            clear_after=config.clear_after,
            min_samples=config.min_samples,
        )

    def thresholds(self) -> dict[str, float]:
        return {
            "psi": self.psi_threshold,
            "js": self.js_threshold,
            "ks": self.ks_threshold,
            "scale": self.scale_threshold,
            "swap": self.swap_threshold,
        }


@dataclass(frozen=True)
class DriftAlert:
    """A channel's alert state changed in report ``report``: ``kind`` ``alert`` or ``cleared``."""

    kind: Literal["alert", "cleared"]
    report: int
    channel: str
    metric: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.report, "channel": self.channel, "metric": self.metric, "score": self.score}


@dataclass
class ChannelState:
    """Hysteresis state of one channel."""

    drifted: bool = False
    over_streak: int = 0
    under_streak: int = 0
    metric: str | None = None
    score: float | None = None
    since_report: int | None = None

    def update(
        self,
        report: int,
        channel: str,
        over: dict[str, float],
        ratios: dict[str, float],
        settings: DriftSettings,
    ) -> DriftAlert | None:
        if over:
            self.over_streak += 1
            self.under_streak = 0
            self.metric = max(over, key=lambda m: ratios[m])
            self.score = over[self.metric]
        else:
            self.under_streak += 1
            self.over_streak = 0
        if not self.drifted and self.over_streak >= settings.alert_after:
            self.drifted, self.since_report = True, report
            return DriftAlert("alert", report, channel, self.metric or "psi", self.score or 0.0)
        if self.drifted and self.under_streak >= settings.clear_after:
            self.drifted, self.since_report = False, report
            return DriftAlert("cleared", report, channel, self.metric or "psi", self.score or 0.0)
        return None


@dataclass(frozen=True)
class DriftReport:
    """One closed report: its span, scores, raw counts and the alerts it raised or cleared."""

    index: int
    start_sample: int
    end_sample: int
    window_start: float
    window_end: float
    windows: int
    skipped_windows: int
    scores: DriftScores
    counts: DriftCounts
    over: dict[str, list[str]]
    drifted: dict[str, bool]
    alerts: list[DriftAlert] = field(default_factory=list)

    @property
    def any_drifted(self) -> bool:
        return any(self.drifted.values())

    def channel(self, name: str) -> ChannelScore:
        return next(c for c in self.scores.channels if c.name == name)

    def summary(self) -> dict[str, Any]:
        """The report as ``edgefleet drift check --json`` prints it."""
        return {
            "index": self.index,
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "drifted": self.any_drifted,
            "channels": {
                c.name: {
                    "psi": c.psi,
                    "js": c.js,
                    "ks": c.ks,
                    "scale": c.scale,
                    "swap": c.swap,
                    "drifted": self.drifted[c.name],
                }
                for c in self.scores.channels
            },
        }

    def body(
        self, *, model_name: str | None, model_version: str | None, stream: str | None
    ) -> dict[str, Any]:
        """The report as a ``drift`` message body (``DriftBody`` version 3, cloud_sync.protocol)."""
        psis = [c.psi for c in self.scores.channels if c.psi is not None]
        outputs = self.scores.outputs
        return {
            "stream": stream,
            "model_name": model_name,
            "model_version": model_version,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "samples": int(self.counts.samples.max(initial=0)),
            "channels": [
                {
                    "channel": c.name,
                    "mean": c.mean,
                    "std": c.std,
                    "reference_mean": c.reference_mean,
                    "reference_std": c.reference_std,
                    "psi": c.psi,
                    "drifted": self.drifted[c.name],
                    "js": c.js,
                    "ks": c.ks,
                    "samples": c.samples,
                    "nonfinite": c.nonfinite,
                    "over": self.over[c.name],
                    "bins": c.bins,
                    "scale": c.scale,
                    "swap": c.swap,
                    "swap_with": c.swap_with,
                }
                for c in self.scores.channels
            ],
            "psi": max(psis) if psis else None,
            "drifted": self.any_drifted,
            "drift_version": 3,
            "report": self.index,
            "windows": self.windows,
            "skipped_windows": self.skipped_windows,
            "outputs": None
            if outputs is None
            else {
                "windows": outputs.windows,
                "class_psi": outputs.class_psi,
                "confidence_psi": outputs.confidence_psi,
                "classes": outputs.classes,
                "confidence": outputs.confidence,
            },
            "moments": None
            if self.counts.moments is None or not self.scores.channels
            else pack_moments(self.counts.moments),
        }
