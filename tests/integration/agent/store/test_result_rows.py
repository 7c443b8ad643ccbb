"""Store.write_result_rows, the pipeline's bulk path, against real SQLite files."""

from __future__ import annotations

import math
import sqlite3

import pytest

from edgefleet.agent.store.rows import result_rows
from edgefleet.errors import StoreError

from .conftest import MakeRecords, OpenStore

pytestmark = pytest.mark.integration


def _outbox_items(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    return conn.execute(
        "SELECT first_result_id, last_result_id FROM outbox WHERE kind = 'results' ORDER BY id"
    ).fetchall()


def test_rows_are_stored_exactly_as_write_results_stores_records(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    records = make_records(40)
    by_records = open_store("records.db", store_raw_outputs=True)
    by_rows = open_store("rows.db", store_raw_outputs=True)
    assert by_records.write_results(records) == list(
        by_rows.write_result_rows(result_rows(records, raw_outputs=True))
    )
    assert by_rows.query_results(limit=100) == by_records.query_results(limit=100)
    assert by_rows.query_results(limit=1)[0]["outputs"] == records[-1].outputs
    assert by_rows._conn.execute("SELECT DISTINCT typeof(outputs) FROM results").fetchall() == [("blob",)]
    # One transaction, one outbox item referencing the id range, per call.
    assert list(by_rows.write_result_rows(result_rows(records[:3], raw_outputs=True))) == [41, 42, 43]
    assert _outbox_items(by_rows._conn) == [(1, 40), (41, 43)]
    assert by_rows.outbox_backlog() == {"results": 43}
    assert by_rows.write_result_rows([]) == range(0)


def test_packed_outputs_are_dropped_unless_the_store_keeps_them(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()  # store_raw_outputs is off by default
    store.write_result_rows(result_rows(make_records(3), raw_outputs=True))
    assert [r["outputs"] for r in store.query_results()] == [None, None, None]


def test_a_refused_row_is_skipped_and_reported_the_others_are_stored(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    rows = result_rows(make_records(5), raw_outputs=False)
    rows[1] = (rows[1][0], math.nan, *rows[1][2:])  # NaN binds as NULL: the NOT NULL check refuses it
    rows[3] = ("", *rows[3][1:])  # empty stream name
    ids = store.write_result_rows(rows)
    assert len(ids) == 3
    stored = store.query_results()
    assert sorted(r["window_seq"] for r in stored) == [0, 2, 4]
    (event,) = store.query_events(kind="store.rejected_results")
    assert event["data"]["count"] == 2
    assert "record 1: window_start must be a finite number" in event["data"]["problems"][0]
    assert "record 3: stream must be a non-empty string" in event["data"]["problems"][1]


def test_numpy_scalars_in_rows_are_converted_not_refused(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    np = pytest.importorskip("numpy")
    store = open_store()
    rows = result_rows(make_records(2), raw_outputs=False)
    rows[0] = (*rows[0][:6], np.float32(0.75), *rows[0][7:])
    assert len(store.write_result_rows(rows)) == 2
    assert store.query_events(kind="store.rejected_results") == []
    assert sorted(r["score"] for r in store.query_results()) == sorted([0.75, rows[1][6]])


def test_a_row_of_the_wrong_width_is_refused_before_anything_is_written(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store()
    rows = result_rows(make_records(3), raw_outputs=False)
    rows[2] = rows[2][:12]
    with pytest.raises(StoreError, match=r"result row 2 has 12 values; expected 13") as info:
        store.write_result_rows(rows)
    rows[2] = (*rows[1], "extra")  # a longer row would shift the others just as well
    with pytest.raises(StoreError, match=r"result row 2 has 14 values; expected 13"):
        store.write_result_rows(rows)
    assert "result_rows" in (info.value.hint or "")
    assert store.query_results() == []


def test_batches_longer_than_one_statement_keep_every_row_in_order(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store(write_chunk_rows=7)  # 100 rows: 14 statements of 7 and one of 2
    records = make_records(100)
    ids = store.write_result_rows(result_rows(records, raw_outputs=False))
    assert list(ids) == list(range(1, 101))
    stored = sorted(store.query_results(limit=200), key=lambda r: r["id"])
    assert [r["window_seq"] for r in stored] == list(range(100))
    assert [r["label"] for r in stored] == [r.label for r in records]


@pytest.mark.parametrize("raw", [False, True])
def test_values_shared_by_a_chunk_and_values_that_differ_are_both_stored_as_given(
    open_store: OpenStore, make_records: MakeRecords, raw: bool
) -> None:
    # Columns whose value is the same in every row of a statement are bound once; the rest per
    # row. Chunks of 4: the first agrees everywhere, the others differ in one shareable column each.
    store = open_store(write_chunk_rows=4, store_raw_outputs=raw)
    rows = result_rows(make_records(16, outputs=3), raw_outputs=True)
    rows[5] = ("gps", *rows[5][1:])
    rows[9] = (*rows[9][:3], "other", "2.0", *rows[9][5:])
    rows[12] = (*rows[12][:9], "cloud", "low_confidence", *rows[12][11:])
    rows[15] = (*rows[15][:10], "timeout", *rows[15][11:])
    assert list(store.write_result_rows(rows)) == list(range(1, 17))
    stored = sorted(store.query_results(limit=100), key=lambda r: r["id"])
    keys = ("stream", "model_name", "model_version", "answered_by", "fallback_reason", "window_seq", "label")
    assert [tuple(r[k] for k in keys) for r in stored] == [
        (row[0], row[3], row[4], row[9], row[10], row[11], row[5]) for row in rows
    ]
    expected_outputs = [r.outputs for r in make_records(16, outputs=3)] if raw else [None] * 16
    assert [r["outputs"] for r in stored] == expected_outputs


def test_columns_that_are_none_in_a_whole_chunk_or_in_some_rows_stay_none(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store(write_chunk_rows=3)
    rows = result_rows(make_records(6), raw_outputs=False)
    # First chunk: label, score and window_seq None everywhere; second: None in one row only.
    rows[:3] = [(*row[:5], None, None, *row[7:11], None, row[12]) for row in rows[:3]]
    rows[4] = (*rows[4][:5], None, None, *rows[4][7:11], None, rows[4][12])
    store.write_result_rows(rows)
    stored = sorted(store.query_results(), key=lambda r: r["id"])
    assert [(r["label"], r["score"], r["window_seq"]) for r in stored] == [
        (row[5], row[6], row[11]) for row in rows
    ]
    assert [r["label"] is None for r in stored] == [True, True, True, False, True, False]


def test_a_remainder_goes_in_power_of_two_statements_so_few_distinct_ones_are_prepared(
    open_store: OpenStore, make_records: MakeRecords
) -> None:
    store = open_store(write_chunk_rows=16)
    rows = result_rows(make_records(45), raw_outputs=False)
    statements, _ = store._statements(rows)
    assert [sql.count("), (") + 1 for sql, _ in statements] == [16, 16, 8, 4, 1]
    assert list(store.write_result_rows(rows)) == list(range(1, 46))
    assert [r["window_seq"] for r in sorted(store.query_results(limit=100), key=lambda r: r["id"])] == list(
        range(45)
    )
