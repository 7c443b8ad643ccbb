"""Gap detection in the DAL (real SQLite file and real PostgreSQL schema): stored message-id
ranges per device, results received, and ids below the device's outbox floor never stored."""

from __future__ import annotations

import pytest

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import EventItem as WireEvent
from edgefleet.cloud_sync.protocol import EventsBody, StatusBody, make_envelope
from edgefleet.controller.dal import Database
from edgefleet.controller.ingest import envelope_to_message
from edgefleet.controller.records import IngestMessage, StatusUpdate, StoredResult

pytestmark = pytest.mark.unit

T0 = 1_699_999_200.0
DEV = "dev-gaps"


def stored(message_id: int, *, results: int = 0, part: int = 0, parts: int = 1) -> IngestMessage:
    return IngestMessage(
        device_id=DEV,
        message_id=f"{message_id}:{part}",
        kind="results" if results else "telemetry",
        received_at=T0,
        parts=parts,
        results=[
            StoredResult(ts=T0, label="walk", latency_ms=1.0, answered_by="edge") for _ in range(results)
        ],
    )


def floor(value: int) -> IngestMessage:
    return IngestMessage(
        device_id=DEV,
        message_id=None,
        kind="status",
        received_at=T0,
        status=StatusUpdate(online=True, ts=T0),
        outbox_floor=value,
    )


def ingest(database: Database, *messages: IngestMessage) -> None:
    database.ingest(list(messages), result_bucket_s=60)


def test_missing_ids_are_those_below_the_floor_never_stored(database: Database) -> None:
    ingest(database, stored(1, results=3), stored(2), stored(5, results=2), stored(9))
    report = database.delivery_report(DEV)
    assert report is not None
    assert report.missing == []  # no floor yet: ids 3, 4, 6-8 may still be on their way
    assert (report.results_received, report.messages_received) == (5, 4)
    ingest(database, floor(8))
    report = database.delivery_report(DEV)
    assert report is not None
    assert report.missing == [(3, 4), (6, 7)]
    assert report.missing_messages == 4
    ingest(database, stored(3), stored(4), stored(6), stored(7), floor(6))  # a stale floor never lowers it
    report = database.delivery_report(DEV)
    assert report is not None
    assert (report.missing, report.outbox_floor, report.messages_received) == ([], 8, 8)


def test_duplicates_count_once(database: Database) -> None:
    ingest(database, stored(1, results=4))
    ingest(database, stored(1, results=4), stored(2, results=1))
    report = database.delivery_report(DEV)
    assert report is not None
    assert report.results_received == 5


def test_a_row_in_parts_is_delivered_once_every_part_is(database: Database) -> None:
    ingest(database, stored(1), stored(2, results=2, part=0, parts=2), floor(4))
    ingest(database, stored(3))
    report = database.delivery_report(DEV)
    assert report is not None
    assert report.missing == [(2, 2)]
    ingest(database, stored(2, results=2, part=1, parts=2))
    report = database.delivery_report(DEV)
    assert report is not None
    assert (report.missing, report.results_received) == ([], 4)


def test_a_row_the_device_dropped_is_not_a_gap(database: Database) -> None:
    dropped = make_envelope(
        DEV,
        "events",
        EventsBody(
            events=[
                WireEvent(
                    ts=T0, kind="sync.outbox_dropped", level="error", message="x", data={"outbox_id": 2}
                )
            ]
        ),
        message_id=3,
    )
    status = make_envelope(DEV, "status", StatusBody(state="online", outbox_floor=4))
    ingest(
        database,
        stored(1),
        envelope_to_message(dropped, received_at=T0),
        envelope_to_message(status, received_at=T0),
    )
    report = database.delivery_report(DEV)
    assert report is not None
    assert report.missing == []
    assert encode_message(status)  # the floor travels in the status body on the wire


def test_unknown_device_has_no_report(database: Database) -> None:
    assert database.delivery_report("nobody") is None
