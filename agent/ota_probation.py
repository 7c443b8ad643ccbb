"""Probation: after a new model is swapped in, watch it serve and decide to keep it or roll back.

For ``[ota] probation_s`` (and at least ``probation_min_windows`` windows) the new model's figures
are compared with the previous model's, taken just before the swap on the same device:

* error rate: windows skipped by inference errors over windows seen (absolute limit);
* p95 batch latency: over the previous model's p95 (a ratio) and/or an absolute ceiling;
* mean confidence: the new version's mean score over the previous version's (a ratio; a model
  that answers everything with low confidence is caught even though nothing fails);
* fallback share: windows handed to the cloud fallback, an increase in share points;
* drift alerts: ``drift.alert`` events raised during probation.

An error-rate breach ends probation early; the others are judged at its end. Results and
events are read from the store with a separate read-only SQLite connection (the store's own is
the writer's), the counters from :class:`~edgefleet.agent.metrics.PipelineCounters`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.agent.metrics import CountersSnapshot, PipelineCounters, percentile

__all__ = ["ProbationLimits", "ProbationOutcome", "ProbationWatch", "StoreReader"]

_POLL_S = 0.25


@dataclass(frozen=True)
class ProbationLimits:
    duration_s: float = 60.0
    min_windows: int = 50
    max_error_rate: float = 0.05
    max_p95_ratio: float | None = None
    max_p95_ms: float | None = None
    min_confidence_ratio: float | None = 0.8
    max_fallback_increase: float | None = 0.2
    max_drift_alerts: int | None = None
    give_up_s: float = 600.0
    """With fewer than ``min_windows`` windows by then (no data flowing), the model is kept:
    nothing showed it worse, and a rollback would be a guess."""


@dataclass
class ProbationOutcome:
    ok: bool
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


class StoreReader:
    """Read-only queries on the agent's SQLite store (results and events since a point)."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        if not self.db.exists():
            return ()
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute(sql, args).fetchone()
            return tuple(row) if row is not None else ()
        except sqlite3.OperationalError:
            return ()
        finally:
            conn.close()

    def marks(self) -> tuple[int, int]:
        """The highest result id and event id now (what came after belongs to probation)."""
        results = self._query("SELECT coalesce(max(id), 0) FROM results")
        events = self._query("SELECT coalesce(max(id), 0) FROM events")
        return (int(results[0]) if results else 0, int(events[0]) if events else 0)

    def mean_score(
        self, version: str, *, after_id: int = 0, last: int | None = None
    ) -> tuple[float | None, int]:
        """Mean score of edge answers by ``version``: after ``after_id``, or the ``last`` N."""
        if last is not None:
            sql = (
                "SELECT avg(score), count(*) FROM (SELECT score FROM results WHERE model_version = ?"
                " AND answered_by = 'edge' AND score IS NOT NULL ORDER BY id DESC LIMIT ?)"
            )
            row = self._query(sql, (version, last))
        else:
            sql = (
                "SELECT avg(score), count(*) FROM results WHERE model_version = ? AND id > ?"
                " AND answered_by = 'edge' AND score IS NOT NULL"
            )
            row = self._query(sql, (version, after_id))
        if not row or row[0] is None:
            return None, 0
        return float(row[0]), int(row[1])

    def count_events(self, kind: str, *, after_id: int) -> int:
        row = self._query("SELECT count(*) FROM events WHERE kind = ? AND id > ?", (kind, after_id))
        return int(row[0]) if row else 0


def _p95_since(before: CountersSnapshot, now: CountersSnapshot) -> float | None:
    new = now.batches - before.batches
    if new <= 0:
        return None
    return percentile(now.latencies_ms[-new:], 95)


class ProbationWatch:
    """One probation: :meth:`baseline` before the swap, :meth:`run` after it."""

    def __init__(
        self,
        limits: ProbationLimits,
        counters: PipelineCounters,
        store: StoreReader,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.counters = counters
        self.store = store
        self._clock = clock
        self._before: CountersSnapshot | None = None
        self._base: dict[str, Any] = {}
        self._marks = (0, 0)
        self.abort = threading.Event()
        self.abort_reason = ""

    def baseline(self, previous_version: str | None) -> dict[str, Any]:
        """The previous model's figures, just before the swap."""
        snap = self.counters.snapshot()
        recent = snap.latencies_ms[-256:]
        score, n = (
            (None, 0) if previous_version is None else self.store.mean_score(previous_version, last=500)
        )
        total = snap.windows_inferred + snap.windows_to_fallback
        self._base = {
            "p95_ms": percentile(recent, 95),
            "mean_score": score,
            "scored": n,
            "fallback_share": (snap.windows_to_fallback / total) if total else 0.0,
        }
        return dict(self._base)

    def start(self) -> None:
        """Mark the moment of the swap: what comes after is the new model's."""
        self._before = self.counters.snapshot()
        self._marks = self.store.marks()

    def request_abort(self, reason: str) -> None:
        self.abort_reason = reason
        self.abort.set()

    def run(self, version: str, stop: threading.Event) -> ProbationOutcome:
        """Watch until the probation ends; the outcome says keep (ok) or roll back (reason)."""
        if self._before is None:
            self.start()
        started = self._clock()
        limits = self.limits
        while True:
            if self.abort.wait(_POLL_S):
                return ProbationOutcome(False, self.abort_reason, self.figures(version))
            if stop.is_set():
                return ProbationOutcome(False, "the agent is stopping; probation not finished", {})
            figures = self.figures(version)
            windows = figures["windows"]
            elapsed = self._clock() - started
            if windows >= limits.min_windows and figures["error_rate"] > limits.max_error_rate:
                return ProbationOutcome(False, self._error_reason(figures), figures)
            # Stored results lag the counters by the store's commit interval: a confidence
            # verdict waits until the new version's answers are in the store too.
            scored_enough = not self._needs_scores() or figures["scored"] >= limits.min_windows
            if elapsed >= limits.duration_s and windows >= limits.min_windows and scored_enough:
                reason = self.judge(figures)
                return ProbationOutcome(not reason, reason, figures)
            if elapsed >= limits.give_up_s:
                figures["note"] = f"only {windows} windows in {elapsed:.0f} s; kept without a verdict"
                return ProbationOutcome(True, "", figures)

    def _needs_scores(self) -> bool:
        return self.limits.min_confidence_ratio is not None and bool(self._base.get("mean_score"))

    def figures(self, version: str) -> dict[str, Any]:
        assert self._before is not None
        now = self.counters.snapshot()
        before = self._before
        inferred = now.windows_inferred - before.windows_inferred
        skipped = now.windows_skipped - before.windows_skipped
        fallback = now.windows_to_fallback - before.windows_to_fallback
        seen = inferred + skipped
        score, scored = self.store.mean_score(version, after_id=self._marks[0])
        return {
            "windows": seen,
            "error_rate": (skipped / seen) if seen else 0.0,
            "p95_ms": _p95_since(before, now),
            "mean_score": score,
            "scored": scored,
            "fallback_share": (fallback / (inferred + fallback)) if inferred + fallback else 0.0,
            "drift_alerts": self.store.count_events("drift.alert", after_id=self._marks[1]),
            "baseline": dict(self._base),
        }

    def _error_reason(self, figures: dict[str, Any]) -> str:
        return (
            f"error rate {figures['error_rate']:.1%} over {figures['windows']} windows is above"
            f" [ota] probation_max_error_rate {self.limits.max_error_rate:.1%}"
        )

    def judge(self, figures: dict[str, Any]) -> str:
        """'' when the new model holds up; else why it does not (every breach, joined)."""
        limits, base = self.limits, self._base
        reasons: list[str] = []
        if figures["error_rate"] > limits.max_error_rate:
            reasons.append(self._error_reason(figures))
        p95, base_p95 = figures["p95_ms"], base.get("p95_ms")
        if p95 is not None and limits.max_p95_ms is not None and p95 > limits.max_p95_ms:
            reasons.append(
                f"p95 latency {p95:.3g} ms is above [ota] probation_max_p95_ms {limits.max_p95_ms:g}"
            )
        if (
            p95 is not None
            and base_p95
            and limits.max_p95_ratio is not None
            and p95 / base_p95 > limits.max_p95_ratio
        ):
            reasons.append(
                f"p95 latency {p95:.3g} ms is {p95 / base_p95:.2f}x the previous model's {base_p95:.3g} ms"
                f" (limit {limits.max_p95_ratio:g}x)"
            )
        score, base_score = figures["mean_score"], base.get("mean_score")
        if (
            score is not None
            and base_score
            and limits.min_confidence_ratio is not None
            and score / base_score < limits.min_confidence_ratio
        ):
            reasons.append(
                f"mean confidence {score:.3f} is {score / base_score:.2f}x the previous model's"
                f" {base_score:.3f} (at least {limits.min_confidence_ratio:g}x required)"
            )
        increase = figures["fallback_share"] - float(base.get("fallback_share") or 0.0)
        if limits.max_fallback_increase is not None and increase > limits.max_fallback_increase:
            reasons.append(
                f"fallback share rose by {increase:.1%} (limit {limits.max_fallback_increase:.1%})"
            )
        alerts = figures["drift_alerts"]
        if limits.max_drift_alerts is not None and alerts > limits.max_drift_alerts:
            reasons.append(f"{alerts} drift alerts during probation (limit {limits.max_drift_alerts})")
        return "; ".join(reasons)
