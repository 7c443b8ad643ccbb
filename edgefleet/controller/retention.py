"""Telemetry downsampling and retention, run periodically in a background thread.

Each run recomputes the per-minute aggregates (avg/min/max/count) of raw telemetry from the last
run minus ``late_data_s`` up to now, rolls minutes into hours, then deletes what is older than
each retention period. Recomputing replaces aggregates, so late data and re-runs are harmless,
and several controllers sharing one database may all run it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edgefleet.controller.config import RetentionConfig
from edgefleet.controller.dal import Database, PurgeReport, RetentionCutoffs

__all__ = ["RetentionWorker", "cutoffs_for"]

log = logging.getLogger(__name__)

_STATE_KEY = "telemetry_downsampled_until"


def cutoffs_for(config: RetentionConfig, now: float) -> RetentionCutoffs:
    return RetentionCutoffs(
        raw_telemetry=now - config.raw_telemetry_s,
        minute_aggregates=now - config.minute_aggregates_s,
        hour_aggregates=now - config.hour_aggregates_s,
        results=now - config.results_s,
        events=now - config.events_s,
        drift=now - config.drift_s,
        commands=now - config.commands_s,
        dedup=now - config.dedup_s,
        sessions=now,
        hard_examples=now - config.hard_examples_s,
    )


class RetentionWorker:
    def __init__(
        self, database: Database, config: RetentionConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.database = database
        self.config = config
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_report: PurgeReport | None = None

    def run_once(self) -> PurgeReport:
        now = self.clock()
        stored = self.database.get_state(_STATE_KEY)
        # First run: aggregate everything raw telemetry still holds.
        since = float(stored) - self.config.late_data_s if stored else now - self.config.raw_telemetry_s
        aggregated = self.database.downsample_telemetry(since=since, until=now + 1)
        self.database.set_state(_STATE_KEY, repr(now))
        report = self.database.purge(cutoffs_for(self.config, now))
        report.aggregated_rows = aggregated
        self.runs += 1
        self.last_report = report
        deleted = {k: v for k, v in report.deleted.items() if v}
        if deleted:
            log.info("retention: aggregated %d rows, deleted %s", aggregated, deleted)
        return report

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="edgefleet-retention", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            try:
                self.run_once()
            except Exception:
                log.exception("retention run failed; retrying in %.0fs", self.config.interval_s)
