"""The data-access layer against real SQLite files and a real PostgreSQL schema."""

from __future__ import annotations

import pytest

from edgefleet.controller.dal import Database, RetentionCutoffs
from edgefleet.controller.dal.migrations import MIGRATIONS
from edgefleet.controller.records import (
    CommandAck,
    DriftItem,
    IngestMessage,
    StatusUpdate,
    StoredEvent,
    StoredResult,
    TelemetryItem,
)
from edgefleet.controller.schemas import CommandRecord

pytestmark = pytest.mark.unit

T0 = 1_699_999_200.0  # an hour boundary


def msg(
    device: str, message_id: str | None, kind: str = "telemetry", at: float = T0, **parts: object
) -> IngestMessage:
    return IngestMessage(device_id=device, message_id=message_id, kind=kind, received_at=at, **parts)  # type: ignore[arg-type]


def status(device: str, online: bool, at: float = T0, **fields: object) -> IngestMessage:
    return msg(device, None, "status", at, status=StatusUpdate(online=online, ts=at, **fields))  # type: ignore[arg-type]


def test_migrations_are_recorded_and_idempotent(database: Database) -> None:
    assert database.schema_version() == max(version for version, _, _ in MIGRATIONS)
    assert database.migrate() == []


def test_devices_appear_with_first_and_last_seen(database: Database) -> None:
    database.ingest([msg("dev-a", "1:0", at=T0), msg("dev-a", "2:0", at=T0 + 5)], result_bucket_s=60)
    device = database.get_device("dev-a")
    assert device is not None
    assert (device.first_seen, device.last_seen, device.online) == (T0, T0 + 5, False)
    database.ingest([msg("dev-a", "3:0", at=T0 + 9)], result_bucket_s=60)
    device = database.get_device("dev-a")
    assert device is not None
    assert (device.first_seen, device.last_seen) == (T0, T0 + 9)
    assert database.get_device("nope") is None


def test_duplicates_are_dropped_within_and_across_batches(database: Database) -> None:
    sample = [TelemetryItem("cpu_percent", T0, 10.0)]
    first = database.ingest(
        [msg("dev-a", "1:0", telemetry=sample), msg("dev-a", "1:0", telemetry=sample), msg("dev-b", "1:0")],
        result_bucket_s=60,
    )
    assert (first.stored, first.duplicates) == (2, 1)
    assert sorted(first.new_devices) == ["dev-a", "dev-b"]
    again = database.ingest([msg("dev-a", "1:0", telemetry=sample), msg("dev-a", "1:1")], result_bucket_s=60)
    assert (again.stored, again.duplicates) == (1, 1)
    series = database.telemetry("dev-a", "cpu_percent", since=0, until=T0 + 60)
    assert [p.value for p in series.points] == [10.0]


def test_status_follows_arrival_order_and_is_never_deduplicated(database: Database) -> None:
    online = status("dev-a", True, agent_version="0.1.0", model_version="1.2.0", hardware={"cpu": "arm64"})
    outcome = database.ingest([online], result_bucket_s=60)
    assert outcome.status_changes == {"dev-a": True}
    offline = status("dev-a", False, at=T0 + 1)
    outcome = database.ingest([offline, status("dev-a", True, at=T0 + 2), offline], result_bucket_s=60)
    device = database.get_device("dev-a")
    assert device is not None
    assert device.online is False
    assert outcome.stored == 3
    # The last will carries no versions: what the online status said stays.
    assert (device.agent_version, device.model_version, device.hardware) == (
        "0.1.0",
        "1.2.0",
        {"cpu": "arm64"},
    )


def test_results_summary_counts_labels_fallback_and_latency(database: Database) -> None:
    results = [StoredResult(T0 + i, "walking", 10.0, "edge", "1.0") for i in range(8)]
    results += [
        StoredResult(T0 + 61, "standing", 200.0, "cloud", "1.0"),
        StoredResult(T0 + 62, "standing", None, "cloud"),
    ]
    database.ingest([msg("dev-a", "1:0", "results", results=results[:5])], result_bucket_s=60)
    database.ingest([msg("dev-a", "2:0", "results", results=results[5:])], result_bucket_s=60)
    database.ingest(
        [msg("dev-b", "1:0", "results", results=[StoredResult(T0, "walking", 5.0, "edge")])],
        result_bucket_s=60,
    )
    summary = database.results_summary("dev-a", since=T0, until=T0 + 3600, bucket_s=60)
    assert summary.total == 10
    assert summary.cloud_count == 2
    assert summary.fallback_share == pytest.approx(0.2)
    assert {(label.label, label.count, label.cloud_count) for label in summary.labels} == {
        ("walking", 8, 0),
        ("standing", 2, 2),
    }
    assert summary.max_latency_ms == 200.0
    assert summary.mean_latency_ms == pytest.approx((8 * 10 + 200) / 9)
    assert summary.p95_latency_ms is not None
    assert 150 <= summary.p95_latency_ms <= 200
    assert [b["total"] for b in summary.buckets] == [8, 2]
    fleet = database.results_summary(None, since=T0, until=T0 + 3600, bucket_s=3600)
    assert fleet.total == 11
    assert len(fleet.buckets) == 1


def test_drift_marks_the_device_by_latest_report(database: Database) -> None:
    database.ingest(
        [msg("dev-a", "1:0", "drift", drift=[DriftItem(T0 + 10, True, 0.4, {"stream": "imu"})])],
        result_bucket_s=60,
    )
    database.ingest([msg("dev-a", "2:0", "drift", drift=[DriftItem(T0, False, 0.01)])], result_bucket_s=60)
    device = database.get_device("dev-a")
    assert device is not None
    assert device.drifted is True  # the older report arrived late and does not override
    reports = database.drift_reports("dev-a", since=0)
    assert [r.drifted for r in reports] == [True, False]
    assert reports[0].details == {"stream": "imu"}
    fleet = database.fleet_summary(now=T0 + 20, window_s=300)
    assert fleet.drifted_devices == ["dev-a"]


def test_events_stored_and_command_acks_update_commands(database: Database) -> None:
    database.ingest([status("dev-a", True)], result_bucket_s=60)
    record = CommandRecord(
        command_id="c1",
        device_id="dev-a",
        name="report_status",
        args={},
        status="sent",
        created_at=T0,
        updated_at=T0,
    )
    database.insert_command(record)
    event = StoredEvent(T0 + 1, "command.acked", "info", "report_status done", {"command_id": "c1"})
    outcome = database.ingest(
        [msg("dev-a", "5:0", "events", events=[event], acks=[CommandAck("c1", "dev-a", True, T0 + 1)])],
        result_bucket_s=60,
    )
    assert outcome.acked_commands == ["c1"]
    command = database.get_command("c1")
    assert command is not None
    assert command.status == "acked"
    # A late "sent" confirmation must not undo the ack.
    assert database.set_command_status("c1", "sent", at=T0 + 2) is False
    events = database.events("dev-a", since=0)
    assert [(e.kind, e.data) for e in events] == [("command.acked", {"command_id": "c1"})]
    assert database.events(None, since=0, kind="other") == []


def test_list_devices_filters_sorts_and_searches(database: Database) -> None:
    database.ingest(
        [
            status("alpha-1", True, at=T0 + 3, model_version="1.0"),
            status("beta-2", False, at=T0 + 1, model_version="2.0"),
            status("Gamma_3", True, at=T0 + 2, model_version="2.0", hardware={"board": "RPi 4"}),
        ],
        result_bucket_s=60,
    )
    assert database.list_devices().total == 3
    assert [d.device_id for d in database.list_devices(online=True).devices] == ["Gamma_3", "alpha-1"]
    assert [d.device_id for d in database.list_devices(model_version="2.0").devices] == ["Gamma_3", "beta-2"]
    by_seen = database.list_devices(sort="last_seen", descending=True).devices
    assert [d.device_id for d in by_seen] == ["alpha-1", "Gamma_3", "beta-2"]
    assert [d.device_id for d in database.list_devices(search="gamma").devices] == ["Gamma_3"]
    assert [d.device_id for d in database.list_devices(search="rpi").devices] == ["Gamma_3"]
    assert database.list_devices(search="_").total == 1  # LIKE wildcards are escaped
    page = database.list_devices(limit=1, offset=1)
    assert (page.total, [d.device_id for d in page.devices]) == (3, ["alpha-1"])


def test_telemetry_downsampling_and_retention(database: Database) -> None:
    points = [TelemetryItem("cpu_percent", T0 + s, float(s)) for s in range(0, 180, 10)]
    points.append(TelemetryItem("temperature_c", T0 + 5, 40.0))
    database.ingest([msg("dev-a", "1:0", telemetry=points)], result_bucket_s=60)
    assert database.downsample_telemetry(since=T0, until=T0 + 3600) > 0
    minute = database.telemetry("dev-a", "cpu_percent", since=T0, until=T0 + 3600, resolution="minute")
    assert [(p.ts, p.value, p.min, p.max, p.count) for p in minute.points] == [
        (T0, 25.0, 0.0, 50.0, 6),
        (T0 + 60, 85.0, 60.0, 110.0, 6),
        (T0 + 120, 145.0, 120.0, 170.0, 6),
    ]
    hour = database.telemetry("dev-a", "cpu_percent", since=T0 - 3600, until=T0 + 3600, resolution="hour")
    assert [(p.value, p.count, p.min, p.max) for p in hour.points] == [(85.0, 18, 0.0, 170.0)]
    # Re-running is idempotent (aggregates are replaced, not added to).
    database.downsample_telemetry(since=T0, until=T0 + 3600)
    again = database.telemetry("dev-a", "cpu_percent", since=T0, until=T0 + 3600, resolution="minute")
    assert again.points == minute.points
    auto = database.telemetry("dev-a", "cpu_percent", since=T0, until=T0 + 3600, raw_horizon=T0 + 100)
    assert auto.resolution == "minute"
    detail = database.device_detail("dev-a")
    assert detail is not None
    assert detail.latest_telemetry == {"cpu_percent": 170.0, "temperature_c": 40.0}
    assert database.telemetry_metrics("dev-a") == ["cpu_percent", "temperature_c"]

    cutoffs = RetentionCutoffs(
        raw_telemetry=T0 + 100,
        minute_aggregates=T0 + 60,
        hour_aggregates=0,
        results=0,
        events=0,
        drift=0,
        commands=0,
        dedup=T0 + 1,
        sessions=T0,
    )
    report = database.purge(cutoffs)
    assert report.deleted["telemetry_raw"] == 11
    assert report.deleted["telemetry_minute"] == 2  # cpu and temperature, first minute
    assert report.deleted["seen_messages"] == 1
    raw = database.telemetry("dev-a", "cpu_percent", since=0, until=T0 + 3600, resolution="raw")
    assert raw.points[0].ts == T0 + 100
    # The message id was forgotten with the dedup window, so a resend now counts as new.
    assert database.ingest([msg("dev-a", "1:0")], result_bucket_s=60).stored == 1


def test_fleet_summary(database: Database) -> None:
    database.ingest(
        [
            status("a", True, model_version="1.0"),
            status("b", False, model_version="1.0"),
            status("c", True),
            msg("a", "1:0", "results", results=[StoredResult(T0 - 10, "x", 20.0, "cloud")] * 3),
        ],
        result_bucket_s=60,
    )
    fleet = database.fleet_summary(now=T0, window_s=300)
    assert (fleet.devices_total, fleet.online, fleet.offline) == (3, 2, 1)
    assert fleet.results_total == 3
    assert fleet.fallback_share == 1.0
    assert fleet.throughput_per_s == pytest.approx(3 / 300)
    assert fleet.model_versions == {"": 1, "1.0": 2}


def test_tokens_users_and_sessions(database: Database) -> None:
    database.add_token("t1", "ci", "read", "hash-1", at=T0)
    token = database.find_token("hash-1", at=T0 + 100)
    assert token is not None
    assert (token.token_id, token.role) == ("t1", "read")
    assert database.find_token("hash-2", at=T0) is None
    assert database.revoke_token("t1", at=T0 + 200) is True
    assert database.find_token("hash-1", at=T0 + 300) is None
    assert [t.revoked_at for t in database.list_tokens()] == [T0 + 200]

    database.upsert_user("admin", "scrypt$x", "admin", at=T0)
    database.upsert_user("admin", "scrypt$y", "read", at=T0)
    assert database.get_user("admin") == ("scrypt$y", "read")
    assert database.get_user("ghost") is None

    database.add_session("s1", "admin", "admin", at=T0, expires_at=T0 + 60)
    assert database.get_session("s1", at=T0 + 1) == ("admin", "admin")
    assert database.get_session("s1", at=T0 + 61) is None
    database.delete_session("s1")
    assert database.get_session("s1", at=T0 + 1) is None


def test_state_roundtrip(database: Database) -> None:
    assert database.get_state("k") is None
    database.set_state("k", "1")
    database.set_state("k", "2")
    assert database.get_state("k") == "2"
