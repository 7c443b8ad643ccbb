"""Late cloud answers (controller migration 8): decoded from ``result_update``, stored once per
device result whatever message id they came in, kept as long as results."""

from __future__ import annotations

import math

from edgefleet.cloud_sync.protocol import ResultUpdateBody, make_envelope
from edgefleet.controller.dal import Database
from edgefleet.controller.dal.base import RetentionCutoffs
from edgefleet.controller.ingest import NO_LABEL, envelope_to_message
from edgefleet.controller.records import IngestMessage, LateAnswer

T0 = 1_700_000_000.0


def update(device: str, message_id: str, answer: LateAnswer) -> IngestMessage:
    return IngestMessage(
        device_id=device, message_id=message_id, kind="result_update", received_at=T0, late_answers=[answer]
    )


def answer(result_id: int, cloud_label: str, ts: float = T0) -> LateAnswer:
    return LateAnswer(
        result_id, ts, "imu", 7, "ABD", "1.0.0", "low_confidence:timeout", cloud_label, 0.9, "2.0.0"
    )


def test_envelope_becomes_a_late_answer_with_finite_values_only() -> None:
    body = ResultUpdateBody(
        result_id=42, stream="imu", window_seq=7, window_end=T0, edge_label=None, edge_model_version="1.0.0",
        cloud_label="FLX", cloud_score=math.nan, cloud_model_version=None,
    )  # fmt: skip
    envelope = make_envelope("dev-a", "result_update", body, message_id=5)
    message = envelope_to_message(envelope, received_at=T0)
    [late] = message.late_answers
    assert (late.result_id, late.edge_label, late.cloud_label) == (42, NO_LABEL, "FLX")
    assert late.cloud_score is None  # NaN is not stored
    assert late.cloud_model_version == ""
    assert message.results == []  # an update is not a new result


def test_an_update_is_applied_once_per_result_and_purged_with_results(database: Database) -> None:
    assert database.ingest([update("dev-a", "1:0", answer(10, "FLX"))], result_bucket_s=60).stored == 1
    # The same result updated again under another message id: kept as first applied.
    assert database.ingest([update("dev-a", "2:0", answer(10, "SPN"))], result_bucket_s=60).stored == 1
    # A resend of a message already stored is a duplicate.
    assert database.ingest([update("dev-a", "1:0", answer(10, "FLX"))], result_bucket_s=60).duplicates == 1
    database.ingest([update("dev-b", "1:0", answer(10, "ABD", ts=T0 + 100))], result_bucket_s=60)
    assert [a.cloud_label for a in database.late_answers("dev-a")] == ["FLX"]
    assert [a.cloud_label for a in database.late_answers("dev-b")] == ["ABD"]
    assert database.late_answers("dev-a")[0] == answer(10, "FLX")
    cutoffs = RetentionCutoffs(
        raw_telemetry=0, minute_aggregates=0, hour_aggregates=0, results=T0 + 1, events=0, drift=0,
        commands=0, dedup=0, sessions=0,
    )  # fmt: skip
    report = database.purge(cutoffs)
    assert report.deleted["late_answers"] == 1
    assert database.late_answers("dev-a") == []
    assert len(database.late_answers("dev-b")) == 1
