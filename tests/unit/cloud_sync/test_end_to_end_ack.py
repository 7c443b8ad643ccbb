"""The device side of the end-to-end acknowledgement: rows stay stored until the controller's
``ack``; unacknowledged rows and MQTT 5 reason 0x10 are sent again (real store file, recorded
publishes, a test clock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgefleet.agent.store import Store
from edgefleet.cloud_sync.acks import expand_ranges, merge_ranges, missing_ranges, to_ranges
from edgefleet.cloud_sync.awaiting import NO_MATCHING_SUBSCRIBERS
from edgefleet.cloud_sync.config import SyncConfig
from edgefleet.cloud_sync.protocol import AckBody
from edgefleet.cloud_sync.uplink import Uplink
from tests.support.sync_fixtures import fill_results, open_store
from tests.unit.cloud_sync.test_uplink import DEVICE, Broker, Clock

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def ids_sent(broker: Broker) -> list[int]:
    return [e.message_id for e in broker.envelopes()]


def test_ranges_compact_merge_and_find_gaps() -> None:
    assert to_ranges([5, 1, 2, 3, 7, 8, 3]) == [(1, 3), (5, 5), (7, 8)]
    assert merge_ranges([(1, 3), (4, 6), (9, 9), (5, 7)]) == [(1, 7), (9, 9)]
    assert list(expand_ranges([(1, 2), (5, 5)])) == [1, 2, 5]
    assert missing_ranges([(1, 3), (6, 8), (12, 12)], below=11) == [(4, 5), (9, 10)]
    assert missing_ranges([(1, 3)], below=2) == []
    assert missing_ranges([], below=100) == []


def test_ack_body_refuses_a_backwards_range() -> None:
    with pytest.raises(ValidationError, match=r"ack range \[5, 2\] ends before it starts"):
        AckBody(ranges=[(5, 2)])


def test_puback_only_marks_sent_the_controller_ack_removes(store: Store) -> None:
    fill_results(store, 30, batch=10)
    uplink = Uplink(store, SyncConfig(), DEVICE)
    broker = Broker()
    assert uplink.pump(broker.publish) == 3
    broker.ack_all(uplink)
    uplink.flush_acks()
    assert store.outbox_backlog() == {"results": 30}  # the broker's PUBACK alone deletes nothing
    assert len(uplink.awaiting) == 3
    assert uplink.pump(broker.publish) == 0  # awaiting rows are not sent twice meanwhile
    first, *_ = ids_sent(broker)
    assert uplink.on_controller_ack(AckBody(ranges=[(first, first + 1)])) == 2
    uplink.flush_acks()
    assert store.outbox_backlog() == {"results": 10}
    assert len(uplink.awaiting) == 1


def test_rows_without_controller_ack_are_resent_after_resend_after_s(store: Store) -> None:
    fill_results(store, 20, batch=10)
    clock = Clock()
    uplink = Uplink(store, SyncConfig(resend_after_s=5.0), DEVICE, clock=clock)
    broker = Broker()
    uplink.pump(broker.publish)
    broker.ack_all(uplink)
    clock.now += 4.9
    assert uplink.pump(broker.publish) == 0
    clock.now += 0.2
    assert uplink.pump(broker.publish) == 2
    assert ids_sent(broker)[2:] == ids_sent(broker)[:2]  # same message ids: the controller de-dups
    assert uplink.awaiting.resent == 2


def test_no_matching_subscribers_is_retried_with_backoff_and_counted(store: Store) -> None:
    fill_results(store, 10, batch=10)
    clock = Clock()
    uplink = Uplink(store, SyncConfig(resend_after_s=30.0), DEVICE, clock=clock)
    broker = Broker()
    uplink.pump(broker.publish)
    uplink.on_ack(broker.sent[0][0], True, NO_MATCHING_SUBSCRIBERS)
    assert uplink.awaiting.retried_no_subscribers == 1
    assert uplink.counters.results_sent == 0  # not counted as sent: nobody received it
    clock.now += 0.6
    assert uplink.pump(broker.publish) == 1  # after the first back-off step, not resend_after_s
    uplink.on_ack(broker.sent[1][0], True, NO_MATCHING_SUBSCRIBERS)
    clock.now += 0.6
    assert uplink.pump(broker.publish) == 0  # the back-off doubled
    clock.now += 0.5
    assert uplink.pump(broker.publish) == 1
    assert store.outbox_backlog() == {"results": 10}


def test_without_end_to_end_ack_no_matching_subscribers_is_counted_only(store: Store) -> None:
    fill_results(store, 10, batch=10)
    uplink = Uplink(store, SyncConfig(end_to_end_ack=False), DEVICE)
    broker = Broker()
    uplink.pump(broker.publish)
    uplink.on_ack(broker.sent[0][0], True, NO_MATCHING_SUBSCRIBERS)
    uplink.flush_acks()
    assert store.outbox_backlog() == {}  # the broker's PUBACK is the acknowledgement here
    assert uplink.counters.no_subscribers == 1
    assert uplink.awaiting.retried_no_subscribers == 0


def test_a_controller_ack_before_the_puback_finishes_the_row(store: Store) -> None:
    fill_results(store, 10, batch=10)
    uplink = Uplink(store, SyncConfig(), DEVICE)
    broker = Broker()
    uplink.pump(broker.publish)
    row = ids_sent(broker)[0]
    uplink.on_controller_ack(AckBody(ranges=[(row, row)]))
    broker.ack_all(uplink)
    uplink.flush_acks()
    assert len(uplink.awaiting) == 0
    assert store.outbox_backlog() == {}


def test_rows_in_parts_need_every_part_acknowledged(store: Store) -> None:
    fill_results(store, 900, batch=900)
    uplink = Uplink(store, SyncConfig(max_batch_results=300), DEVICE)
    broker = Broker()
    assert uplink.pump(broker.publish) == 3
    broker.ack_all(uplink)
    row = ids_sent(broker)[0]
    uplink.on_controller_ack(AckBody(parts=[(row, 0), (row, 2)]))
    uplink.flush_acks()
    assert store.outbox_backlog() == {"results": 900}
    uplink.on_controller_ack(AckBody(parts=[(row, 1)]))
    uplink.flush_acks()
    assert store.outbox_backlog() == {}


def test_awaiting_rows_are_capped_and_a_reconnect_resends_them(store: Store) -> None:
    fill_results(store, 50, batch=5)
    uplink = Uplink(store, SyncConfig(max_awaiting_ack=4, max_inflight=8), DEVICE)
    broker = Broker()
    uplink.pump(broker.publish)
    broker.ack_all(uplink)
    assert len(uplink.awaiting) == 8
    assert uplink.pump(broker.publish) == 0  # 8 awaiting >= max_awaiting_ack
    uplink.reset()  # connection lost: the broker may have lost them
    again = Broker()
    assert uplink.pump(again.publish) == 8
    assert ids_sent(again) == ids_sent(broker)


def test_an_ack_with_a_huge_range_touches_only_known_rows(store: Store) -> None:
    fill_results(store, 10, batch=5)
    uplink = Uplink(store, SyncConfig(), DEVICE)
    broker = Broker()
    uplink.pump(broker.publish)
    broker.ack_all(uplink)
    assert uplink.on_controller_ack(AckBody(ranges=[(1, 2**62)])) == 2


def test_the_store_peek_skips_rows_awaiting_acknowledgement(store: Store) -> None:
    fill_results(store, 40, batch=10)
    ids = [item.id for item in store.outbox_peek(10)]
    assert len(ids) == 4
    peeked = store.outbox_peek(3, skip={ids[0], ids[2]})
    assert [item.id for item in peeked] == [ids[1]]  # the limit counts the skipped rows
    assert [item.id for item in store.outbox_peek(10, skip={ids[0]})] == ids[1:]
