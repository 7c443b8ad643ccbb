"""The controller's ack batching (pure logic: the publish function is recorded)."""

from __future__ import annotations

import pytest

from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.protocol import AckBody
from edgefleet.controller.acks import AckPublisher, AckRef

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self) -> None:
        self.up = True
        self.sent: list[tuple[str, AckBody]] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        if not self.up:
            return False
        body = decode_message(topic, payload).body
        assert isinstance(body, AckBody)
        self.sent.append((topic, body))
        return True


def test_ids_become_ranges_per_device_and_parts_pairs() -> None:
    out = Recorder()
    acks = AckPublisher(out, prefix="edgefleet/v1")
    acks.add([AckRef("dev-a", i) for i in (1, 2, 3, 5, 3)] + [AckRef("dev-b", 9)])
    acks.add([AckRef("dev-a", 7, part=1, parts=2)])
    assert acks.flush() == 3
    assert out.sent == [
        ("edgefleet/v1/dev-a/ack", AckBody(ranges=[(1, 3), (5, 5)])),
        ("edgefleet/v1/dev-a/ack", AckBody(parts=[(7, 1)])),
        ("edgefleet/v1/dev-b/ack", AckBody(ranges=[(9, 9)])),
    ]
    assert acks.flush() == 0  # nothing pending twice


def test_sparse_ids_are_split_into_small_messages() -> None:
    out = Recorder()
    acks = AckPublisher(out, prefix="edgefleet/v1")
    acks.add([AckRef("dev-a", i) for i in range(1, 240, 2)])  # 120 single-id ranges
    assert acks.flush() == 3
    assert [len(body.ranges) for _, body in out.sent] == [50, 50, 20]


def test_acks_that_cannot_be_published_wait_for_the_next_flush() -> None:
    out = Recorder()
    out.up = False
    acks = AckPublisher(out, prefix="edgefleet/v1")
    acks.add([AckRef("dev-a", 4), AckRef("dev-a", 5), AckRef("dev-a", 8, part=0, parts=3)])
    assert acks.flush() == 0
    assert acks.publish_failures == 2
    out.up = True
    assert acks.flush() == 2
    assert out.sent == [
        ("edgefleet/v1/dev-a/ack", AckBody(ranges=[(4, 5)])),
        ("edgefleet/v1/dev-a/ack", AckBody(parts=[(8, 0)])),
    ]
