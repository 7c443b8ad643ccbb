"""Envelope -> IngestMessage mapping and the batching writer, with a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import make_envelope
from edgefleet.controller.config import DatabaseConfig, IngestConfig
from edgefleet.controller.dal import Database, IngestOutcome, open_database
from edgefleet.controller.ingest import NO_LABEL, IngestPipeline, envelope_to_message, metric_key
from edgefleet.controller.records import IngestMessage

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
TOPIC = "edgefleet/v1/{device}/{kind}"


def result_row(label: str | None, answered_by: str = "edge", latency: float = 12.0) -> dict[str, object]:
    return {
        "stream": "imu",
        "window_start": NOW - 2,
        "window_end": NOW - 1,
        "model_name": "har",
        "model_version": "1.0.0",
        "label": label,
        "latency_ms": latency,
        "answered_by": answered_by,
    }


def test_metric_key_sorts_labels() -> None:
    assert metric_key("cpu_percent", {}) == "cpu_percent"
    assert metric_key("sync_backlog", {"kind": "results", "a": "1"}) == "sync_backlog{a=1,kind=results}"


def test_results_map_labels_and_skew_correction() -> None:
    envelope = make_envelope(
        "dev-1", "results", {"results": [result_row("walk"), result_row(None, "cloud")]}, message_id=7
    ).model_copy(update={"sent_at": NOW - 100})
    message = envelope_to_message(envelope, received_at=NOW)
    assert message.message_id == "7:0"
    assert [r.label for r in message.results] == ["walk", NO_LABEL]
    assert [r.answered_by for r in message.results] == ["edge", "cloud"]
    # The device clock is 100 s behind: timestamps move by the skew sent_at reveals.
    assert message.results[0].ts == pytest.approx(NOW - 1 + 100)


def test_status_is_never_deduplicated_and_will_keeps_versions() -> None:
    online = make_envelope(
        "dev-1", "status", {"state": "online", "agent_version": "0.1", "hardware": {"cpu": 4}}
    )
    will = make_envelope("dev-1", "status", {"state": "offline"})
    on = envelope_to_message(online, received_at=NOW)
    off = envelope_to_message(will, received_at=NOW)
    assert on.message_id is None
    assert on.status is not None
    assert (on.status.online, on.status.hardware) == (True, {"cpu": 4})
    assert off.status is not None
    assert (off.status.online, off.status.hardware, off.status.agent_version) == (False, None, None)


def test_events_carry_command_acks() -> None:
    body = {
        "events": [
            {"ts": NOW, "kind": "command.acked", "message": "done", "data": {"command_id": "c1"}},
            {
                "ts": NOW,
                "kind": "command.refused",
                "message": "bad",
                "level": "warning",
                "data": {"command_id": "c2"},
            },
            {"ts": NOW, "kind": "pipeline.restarted", "message": "ok"},
        ]
    }
    message = envelope_to_message(make_envelope("d", "events", body, message_id=3), received_at=NOW)
    assert [(a.command_id, a.ok) for a in message.acks] == [("c1", True), ("c2", False)]
    assert len(message.events) == 3


def test_command_outcomes_map_to_statuses() -> None:
    outcomes = ["acked", "done", "failed", "expired", "unknown", "refused"]
    body = {
        "events": [
            {"ts": NOW, "kind": f"command.{o}", "message": o, "data": {"command_id": f"c-{o}"}}
            for o in outcomes
        ]
    }
    message = envelope_to_message(make_envelope("d", "events", body, message_id=4), received_at=NOW)
    assert [a.status for a in message.acks] == ["acked", "done", "failed", "expired", "unknown", "failed"]


def test_telemetry_and_drift_mapping() -> None:
    telemetry = make_envelope(
        "d",
        "telemetry",
        {"samples": [{"ts": NOW, "name": "buffer_fill_ratio", "value": 0.5, "labels": {"stream": "imu"}}]},
        message_id=1,
    )
    message = envelope_to_message(telemetry, received_at=NOW)
    assert [(t.metric, t.value) for t in message.telemetry] == [("buffer_fill_ratio{stream=imu}", 0.5)]
    drift = make_envelope(
        "d", "drift", {"window_start": NOW - 60, "window_end": NOW, "psi": 0.3, "drifted": True}, message_id=2
    )
    item = envelope_to_message(drift, received_at=NOW).drift[0]
    assert (item.drifted, item.score, item.details["window_start"]) == (True, 0.3, NOW - 60)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(DatabaseConfig(sqlite_path=tmp_path / "c.db"))
    yield db
    db.close()


def test_pipeline_batches_dedups_and_counts_malformed(database: Database) -> None:
    outcomes: list[IngestOutcome] = []
    pipeline = IngestPipeline(database, IngestConfig(batch_max_delay_ms=20), on_stored=outcomes.append)
    pipeline.start()
    try:
        body = {"samples": [{"ts": NOW, "name": "cpu_percent", "value": 3.0}]}
        payload = encode_message(make_envelope("dev-1", "telemetry", body, message_id=1))
        topic = TOPIC.format(device="dev-1", kind="telemetry")
        for _ in range(3):
            assert pipeline.submit(topic, payload, NOW)
        pipeline.submit(topic, b"not a protocol message", NOW)
        pipeline.submit("edgefleet/v1/dev-1/nonsense", payload, NOW)
        pipeline.submit(TOPIC.format(device="dev-2", kind="telemetry"), payload, NOW)  # names another device
        assert pipeline.flush(10)
        stats = pipeline.snapshot()
        assert (stats.received, stats.stored, stats.duplicates, stats.malformed) == (6, 1, 2, 3)
        assert pipeline.stats.malformed_by_reason == {"malformed": 1, "wrong_topic": 2}
        assert stats.lag_p99_ms is not None
        assert database.get_device("dev-1") is not None
        assert database.get_device("dev-2") is None
        assert sum(o.stored for o in outcomes) == 1
    finally:
        pipeline.stop()


def test_pipeline_refuses_when_queue_is_full(database: Database) -> None:
    pipeline = IngestPipeline(database, IngestConfig(queue_max=100))  # not started: nothing drains
    accepted = [pipeline.submit("edgefleet/v1/d/events", b"x", NOW) for _ in range(105)]
    assert accepted.count(False) == 5
    assert pipeline.snapshot().dropped_queue_full == 5


def test_a_restart_does_not_reingest(tmp_path: Path) -> None:
    config = DatabaseConfig(sqlite_path=tmp_path / "restart.db")
    body = {"samples": [{"ts": NOW, "name": "cpu_percent", "value": 3.0}]}
    payload = encode_message(make_envelope("dev-1", "telemetry", body, message_id=9))
    topic = TOPIC.format(device="dev-1", kind="telemetry")
    for expected_stored in (1, 0):  # the second "process" sees the same message again
        database = open_database(config)
        pipeline = IngestPipeline(database, IngestConfig(batch_max_delay_ms=10))
        pipeline.start()
        pipeline.submit(topic, payload, NOW)
        assert pipeline.flush(10)
        pipeline.stop()
        assert pipeline.stats.stored == expected_stored
        database.close()


def test_non_finite_values_never_reach_the_database(database: Database) -> None:
    inf, nan = float("inf"), float("nan")
    telemetry = make_envelope(
        "dev-1",
        "telemetry",
        {
            "samples": [
                {"ts": inf, "name": "cpu_percent", "value": 1.0},
                {"ts": NOW, "name": "x", "value": nan},
            ]
        },
        message_id=1,
    )
    message = envelope_to_message(telemetry, received_at=NOW)
    assert [(t.metric, t.ts) for t in message.telemetry] == [("cpu_percent", NOW)]
    events = make_envelope(
        "dev-1",
        "events",
        {"events": [{"ts": nan, "kind": "k", "message": "m", "data": {"v": [inf, 1.0]}}]},
        message_id=2,
    )
    event = envelope_to_message(events, received_at=NOW).events[0]
    assert (event.ts, event.data) == (NOW, {"v": [None, 1.0]})
    drift = make_envelope("dev-1", "drift", {"window_start": 0, "window_end": inf, "psi": nan}, message_id=3)
    item = envelope_to_message(drift, received_at=NOW).drift[0]
    assert (item.ts, item.score) == (NOW, None)


class _RefusesOneDevice:
    """A database wrapper that refuses any batch holding a message of ``bad``, like a constraint would."""

    def __init__(self, inner: Database, bad: str) -> None:
        self.inner = inner
        self.bad = bad

    def ingest(self, messages: list[IngestMessage], *, result_bucket_s: int) -> IngestOutcome:
        if any(m.device_id == self.bad for m in messages):
            raise ValueError("constraint failed")
        return self.inner.ingest(messages, result_bucket_s=result_bucket_s)


def test_one_unstorable_message_does_not_block_the_batch(database: Database) -> None:
    refusing = _RefusesOneDevice(database, "dev-bad")
    pipeline = IngestPipeline(refusing, IngestConfig(batch_max_delay_ms=50))  # type: ignore[arg-type]
    pipeline.start()
    try:
        body = {"samples": [{"ts": NOW, "name": "cpu_percent", "value": 3.0}]}
        for device in ("dev-1", "dev-bad", "dev-2"):
            payload = encode_message(make_envelope(device, "telemetry", body, message_id=1))
            pipeline.submit(TOPIC.format(device=device, kind="telemetry"), payload, NOW)
        assert pipeline.flush(10)
        assert pipeline.stats.stored == 2
        assert pipeline.stats.malformed_by_reason == {"unstorable": 1}
        assert database.list_devices().total == 2
    finally:
        pipeline.stop()
