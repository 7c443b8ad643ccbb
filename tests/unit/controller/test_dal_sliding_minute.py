"""With one-second result buckets (the demo's setting), "the last 60 s" is a sliding minute.

With the default 60-s buckets, ``since=-60`` reads only the current bucket, which restarts from
zero at every minute boundary; the demo's "in the last minute" used to fall back to near zero.
"""

from __future__ import annotations

import pytest

from edgefleet.controller.dal import Database
from edgefleet.controller.records import IngestMessage, StoredResult

pytestmark = pytest.mark.unit

MINUTE = 1_699_999_200.0  # a minute boundary


def results(at: float, count: int) -> IngestMessage:
    items = [StoredResult(at + i / (count + 1), "walking", 2.0, "edge") for i in range(count)]
    return IngestMessage("dev-a", f"{at}:0", "results", received_at=at, results=items)


@pytest.mark.parametrize("now", [MINUTE + 1.5, MINUTE + 30.5, MINUTE + 59.5])
def test_one_second_buckets_give_a_sliding_minute(database: Database, now: float) -> None:
    # Two results every second for the two minutes before `now`.
    database.ingest([results(now - 120 + s, 2) for s in range(120)], result_bucket_s=1)
    summary = database.results_summary("dev-a", since=now - 60, until=now, bucket_s=1)
    # 60 whole seconds before now, whatever the position of now within its minute (the second
    # holding now - 60 starts before `since` and is left out; the one holding now is in).
    assert summary.total in {118, 120}


def test_sixty_second_buckets_restart_at_the_minute(database: Database) -> None:
    # Why the demo no longer uses them for "in the last minute": just after a boundary the
    # current bucket holds only the last second and a half.
    now = MINUTE + 1.5
    database.ingest([results(now - 120 + s, 2) for s in range(120)], result_bucket_s=60)
    summary = database.results_summary("dev-a", since=now - 60, until=now, bucket_s=60)
    assert summary.total <= 4
