"""`status_changed_at` ("online since" on the device page) moves only when online/offline flips."""

from __future__ import annotations

import pytest

from edgefleet.controller.dal import Database
from edgefleet.controller.records import IngestMessage, StatusUpdate

pytestmark = pytest.mark.unit

T0 = 1_699_999_200.0


def status(online: bool, at: float) -> IngestMessage:
    return IngestMessage(
        device_id="dev-a", message_id=None, kind="status", received_at=at, status=StatusUpdate(online, at)
    )


def since(database: Database) -> float | None:
    device = database.get_device("dev-a")
    assert device is not None
    return device.status_changed_at


def test_repeated_online_status_keeps_online_since(database: Database) -> None:
    database.ingest([status(True, T0)], result_bucket_s=60)
    assert since(database) == T0
    for beat in range(1, 4):
        database.ingest([status(True, T0 + 5 * beat)], result_bucket_s=60)
    assert since(database) == T0
    database.ingest([status(True, T0 + 30), status(True, T0 + 35)], result_bucket_s=60)
    assert since(database) == T0


def test_a_flip_moves_it_and_the_first_status_sets_it(database: Database) -> None:
    database.ingest([status(False, T0)], result_bucket_s=60)
    assert since(database) == T0
    database.ingest([status(False, T0 + 5)], result_bucket_s=60)
    assert since(database) == T0
    database.ingest([status(True, T0 + 10)], result_bucket_s=60)
    assert since(database) == T0 + 10
    database.ingest(
        [status(False, T0 + 20), status(True, T0 + 25), status(True, T0 + 30)], result_bucket_s=60
    )
    assert since(database) == T0 + 25
