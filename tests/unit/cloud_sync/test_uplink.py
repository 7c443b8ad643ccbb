"""The outbox drain against a real store file, with a recording publish function."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.store import Store
from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.config import SyncConfig
from edgefleet.cloud_sync.protocol import Envelope, ResultsBody, StatusBody
from edgefleet.cloud_sync.uplink import Uplink, build_messages, wire_bytes
from tests.support.sync_fixtures import body_of, fill_results, open_store

pytestmark = pytest.mark.unit

DEVICE = "dev-uplink"


class Broker:
    """Records publishes; the test decides when (and whether) each is acknowledged."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, bytes, bool]] = []
        self.next_mid = 1
        self.up = True

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        if not self.up:
            return None
        mid = self.next_mid
        self.next_mid += 1
        self.sent.append((mid, topic, payload, retain))
        return mid

    def envelopes(self) -> list[Envelope]:
        return [decode_message(topic, payload) for _, topic, payload, _ in self.sent]

    def ack_all(self, uplink: Uplink, *, accepted: bool = True) -> None:
        for mid, *_ in self.sent:
            uplink.on_ack(mid, accepted, "Success" if accepted else "Not authorized")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def test_rows_leave_the_store_only_once_acknowledged(store: Store) -> None:
    fill_results(store, 100, batch=10)
    store.add_event("boot", "hello")
    uplink = Uplink(store, SyncConfig(max_inflight=32, end_to_end_ack=False), DEVICE)
    broker = Broker()
    assert uplink.pump(broker.publish) == 11
    kinds = [e.kind for e in broker.envelopes()]
    assert kinds == ["events"] + ["results"] * 10  # priority order
    assert store.outbox_backlog() == {"events": 1, "results": 100}
    broker.ack_all(uplink)
    uplink.flush_acks()
    assert store.outbox_backlog() == {}
    assert uplink.counters.results_sent == 100
    assert uplink.counters.bytes_sent_by_kind["results"] == sum(
        wire_bytes(t, len(p), v5=True) for _, t, p, _ in broker.sent if "results" in t
    )


def test_unacknowledged_rows_are_resent_with_the_same_ids_after_reconnect(store: Store) -> None:
    fill_results(store, 60, batch=20)
    uplink = Uplink(store, SyncConfig(end_to_end_ack=False), DEVICE)
    first = Broker()
    uplink.pump(first.publish)
    uplink.on_ack(first.sent[0][0], True, "Success")  # only the first message made it
    uplink.reset()  # connection lost
    second = Broker()
    uplink.pump(second.publish)
    ids_first = [e.message_id for e in first.envelopes()]
    ids_second = [e.message_id for e in second.envelopes()]
    assert ids_second == ids_first[1:]
    assert [e.body for e in second.envelopes()] == [e.body for e in first.envelopes()][1:]


def test_window_limits_messages_in_flight(store: Store) -> None:
    fill_results(store, 100, batch=5)
    uplink = Uplink(store, SyncConfig(max_inflight=4), DEVICE)
    broker = Broker()
    assert uplink.pump(broker.publish) == 4
    assert uplink.pump(broker.publish) == 0
    uplink.on_ack(1, True, "Success")
    assert uplink.pump(broker.publish) == 1


def test_refused_publish_keeps_the_row_and_stops_the_drain(store: Store) -> None:
    fill_results(store, 10, batch=10)
    uplink = Uplink(store, SyncConfig(), DEVICE)
    broker = Broker()
    uplink.pump(broker.publish)
    broker.ack_all(uplink, accepted=False)
    uplink.flush_acks()
    assert store.outbox_backlog() == {"results": 10}
    assert uplink.counters.refused == 1
    assert "Not authorized" in (uplink.counters.last_refusal or "")
    assert uplink.pump(broker.publish) == 0


def test_bandwidth_budget_holds_the_rest_in_the_store(store: Store) -> None:
    fill_results(store, 400, batch=20)
    clock = Clock()
    config = SyncConfig(bandwidth_bytes_per_hour=3600 * 10, max_message_bytes=1024)  # 10 B/s, 1 KiB burst
    uplink = Uplink(store, config, DEVICE, clock=clock)
    broker = Broker()
    uplink.pump(broker.publish)
    sent_bytes = sum(wire_bytes(t, len(p), v5=True) for _, t, p, _ in broker.sent)
    assert 0 < len(broker.sent) < 20
    assert sent_bytes <= 1024 + max(wire_bytes(t, len(p), v5=True) for _, t, p, _ in broker.sent)
    assert uplink.budget_wait() > 0
    broker.ack_all(uplink)
    before = len(broker.sent)
    clock.now += 3600  # an hour later the budget allows more
    uplink.pump(broker.publish)
    assert len(broker.sent) > before


def test_message_rate_limit(store: Store) -> None:
    fill_results(store, 100, batch=1)
    clock = Clock()
    uplink = Uplink(store, SyncConfig(max_messages_per_s=5, max_inflight=100), DEVICE, clock=clock)
    broker = Broker()
    assert uplink.pump(broker.publish) == 5
    clock.now += 1.0
    assert uplink.pump(broker.publish) == 0  # window not cleared yet: the queue waits for acks
    broker.ack_all(uplink)
    assert uplink.pump(broker.publish) == 5


def test_big_rows_are_split_into_parts_under_the_size_limit(store: Store) -> None:
    fill_results(store, 1000, batch=1000)
    config = SyncConfig(max_batch_results=300, max_message_bytes=2048)
    items = store.outbox_peek(1)
    messages = build_messages(items[0], DEVICE, config)
    assert all(len(p) <= 2048 for _, p in messages)
    envelopes = [decode_message(t, p) for t, p in messages]
    assert {e.message_id for e in envelopes} == {items[0].id}
    assert [e.part for e in envelopes] == list(range(len(envelopes)))
    assert all(e.parts == len(envelopes) for e in envelopes)
    rows = [r.window_seq for e in envelopes for r in body_of(e, ResultsBody).results]
    assert rows == list(range(1000))


def test_a_row_that_cannot_be_encoded_is_dropped_with_an_event(store: Store) -> None:
    bad = store.enqueue("drift", {"psi": "not-a-number"}, priority=1)
    unknown = store.enqueue("selfie", {"x": 1}, priority=1)
    uplink = Uplink(store, SyncConfig(), DEVICE)
    broker = Broker()
    uplink.pump(broker.publish)
    assert uplink.counters.dropped == 2
    events = store.query_events(kind="sync.outbox_dropped")
    assert sorted(e["data"]["outbox_id"] for e in events) == [bad, unknown]
    assert "selfie" not in store.outbox_backlog()
    assert "drift" not in store.outbox_backlog()


def test_status_rows_are_retained(store: Store) -> None:
    store.enqueue("status", {"state": "online", "agent_version": "1"}, priority=0)
    uplink = Uplink(store, SyncConfig(), DEVICE)
    broker = Broker()
    uplink.pump(broker.publish)
    assert broker.sent[0][3] is True
    assert body_of(broker.envelopes()[0], StatusBody).state == "online"
