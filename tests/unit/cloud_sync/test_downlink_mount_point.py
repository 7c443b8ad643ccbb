"""Mosquitto 2.0.11 leaves a listener's mount point on the topics it sends (fixed in 2.0.12): the
downlink maps such a topic back only when it ends in one of this device's own subscriptions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.store import Store
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.downlink import Downlink
from edgefleet.cloud_sync.protocol import Envelope, make_envelope
from tests.support.sync_fixtures import open_store

pytestmark = pytest.mark.unit

DEVICE = "dev-mp"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def command(device: str, message_id: int) -> bytes:
    body = {"command_id": f"c{message_id}", "command": "ping"}
    return encode_message(make_envelope(device, "cmd", body, message_id=message_id))


def test_mounted_topics_of_its_own_subscriptions_are_handled(store: Store) -> None:
    seen: list[Envelope] = []
    downlink = Downlink(store, DEVICE, prefix="edgefleet/v1", max_bytes=4096)
    downlink.register("cmd", seen.append)
    downlink.on_message(f"devices/edgefleet/v1/{DEVICE}/cmd", command(DEVICE, 1))
    downlink.on_message(f"edgefleet/v1/{DEVICE}/cmd", command(DEVICE, 2))
    assert [e.message_id for e in seen] == [1, 2]
    assert downlink.counters.refused == 0


def test_other_topics_stay_refused(store: Store) -> None:
    downlink = Downlink(store, DEVICE, prefix="edgefleet/v1", max_bytes=4096)
    downlink.register("cmd", lambda e: None)
    downlink.on_message("devices/edgefleet/v1/other-dev/cmd", command("other-dev", 1))
    downlink.on_message(f"devices/edgefleet/v1/{DEVICE}/cmd/extra", command(DEVICE, 2))
    downlink.on_message(f"xdevices/edgefleet/v1/{DEVICE}x/cmd", command(DEVICE, 3))
    assert downlink.counters.refused == 3
    assert downlink.counters.handled == 0
