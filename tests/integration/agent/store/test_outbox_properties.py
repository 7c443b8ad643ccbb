"""Random sequences of writes, peeks and acks keep the outbox invariants sync relies on."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.agent.store import ResultRecord, Store, StoreConfig

pytestmark = pytest.mark.integration

_counter = itertools.count()

operations = st.lists(
    st.one_of(
        st.tuples(st.just("results"), st.integers(1, 40)),
        st.tuples(st.just("enqueue"), st.sampled_from([("status", 0), ("drift", 1), ("ota/progress", 0)])),
        st.tuples(st.just("event"), st.just(None)),
        st.tuples(st.just("ack"), st.integers(0, 6)),
        st.tuples(st.just("reopen"), st.just(None)),
    ),
    min_size=1,
    max_size=25,
)


def _record(i: int) -> ResultRecord:
    return ResultRecord("imu", 1.0 + i, 2.0 + i, "m", "1", "a", 0.5, None, 1.0, window_seq=i)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_outbox_invariants(tmp_path: Path, ops: list[tuple[str, object]]) -> None:
    path = tmp_path / f"store-{next(_counter)}.db"
    store = Store.open(path, StoreConfig(path=path))
    issued: list[int] = []  # every outbox id ever seen, in the order they appeared
    acked: set[int] = set()
    written = 0
    try:
        for op, arg in ops:
            if op == "results":
                assert isinstance(arg, int)
                ids = store.write_results([_record(written + i) for i in range(arg)])
                assert len(ids) == arg
                written += arg
            elif op == "enqueue":
                assert isinstance(arg, tuple)
                kind, priority = arg
                issued_id = store.enqueue(kind, {"n": written}, priority=priority)
                assert not issued or issued_id > max(issued)
                issued.append(issued_id)
            elif op == "event":
                store.add_event("test.event", "hello")
            elif op == "ack":
                assert isinstance(arg, int)
                items = store.outbox_peek(arg)
                store.outbox_ack([i.id for i in items])
                acked |= {i.id for i in items}
            else:
                store.close()
                store = Store.open(path, StoreConfig(path=path))

            items = store.outbox_peek(10_000)
            keys = [(i.priority, i.id) for i in items]
            assert keys == sorted(keys)
            assert not acked & {i.id for i in items}  # an acked item never comes back
            new = [i.id for i in items if i.id not in issued]
            if issued and new:
                assert min(new) > max(issued)  # ids are never reused, not even after acks/reopen
            issued += new
            result_rows = [
                r["id"]
                for i in items
                if i.kind == "results" and isinstance(i.payload, list)
                for r in i.payload
            ]
            assert len(result_rows) == len(set(result_rows))  # each result in exactly one item
            backlog = store.outbox_backlog()
            assert backlog.get("results", 0) == len(result_rows)
            unsynced = store.db.execute("SELECT count(*) FROM results WHERE synced_at IS NULL").fetchone()[0]
            assert backlog.get("results", 0) == unsynced  # counted from the items' ranges
            assert sum(v for k, v in backlog.items() if k != "results") == sum(
                1 for i in items if i.kind != "results"
            )
            stored = store.db.execute("SELECT count(*) FROM results").fetchone()[0]
            assert stored == written  # nothing lost, nothing duplicated
    finally:
        store.close()
