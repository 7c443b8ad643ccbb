from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.controller.config import DatabaseConfig, RetentionConfig
from edgefleet.controller.dal import open_database
from edgefleet.controller.records import IngestMessage, TelemetryItem
from edgefleet.controller.retention import RetentionWorker

pytestmark = pytest.mark.unit

DAY = 86_400.0
T0 = 1_699_999_200.0


def test_raw_telemetry_becomes_aggregates_then_expires(tmp_path: Path) -> None:
    db = open_database(DatabaseConfig(sqlite_path=tmp_path / "c.db"))
    now = [T0]
    worker = RetentionWorker(db, RetentionConfig(raw_telemetry_s=int(DAY)), clock=lambda: now[0])
    try:
        points = [TelemetryItem("cpu_percent", T0 - 120 + i, float(i)) for i in range(120)]
        db.ingest([IngestMessage("d", "1:0", "telemetry", T0, telemetry=points)], result_bucket_s=60)
        report = worker.run_once()
        assert report.aggregated_rows > 0
        assert report.deleted["telemetry_raw"] == 0
        now[0] = T0 + DAY + 10  # a day later the raw points go, the minute averages stay
        report = worker.run_once()
        assert report.deleted["telemetry_raw"] == 120
        series = db.telemetry("d", "cpu_percent", since=T0 - 3600, until=T0 + 1, raw_horizon=now[0] - DAY)
        assert series.resolution == "minute"
        assert [(p.value, p.count) for p in series.points] == [(29.5, 60), (89.5, 60)]
        assert worker.runs == 2
    finally:
        db.close()
