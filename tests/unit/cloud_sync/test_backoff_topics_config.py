"""Pure logic: back-off, token buckets, topic names, SyncConfig validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edgefleet.cloud_sync.backoff import Backoff, TokenBucket
from edgefleet.cloud_sync.config import SyncConfig, TlsConfig
from edgefleet.cloud_sync.topics import (
    DOWNLINK_KINDS,
    controller_filters,
    device_subscriptions,
    device_topic,
    parse_topic,
    shared_filter,
)
from edgefleet.errors import ProtocolError

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_full_jitter_grows_to_the_cap_and_resets() -> None:
    ceilings: list[float] = []

    def highest(lo: float, hi: float) -> float:
        ceilings.append(hi)
        return hi

    backoff = Backoff(0.5, 8.0, rng=highest)
    delays = [backoff.next_delay() for _ in range(7)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert delays == ceilings
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_draws_between_zero_and_the_ceiling() -> None:
    backoff = Backoff(1.0, 60.0)
    for _ in range(200):
        ceiling = backoff.ceiling()
        assert 0.0 <= backoff.next_delay() <= ceiling
    assert backoff.ceiling() == 60.0


def test_backoff_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="min_s <= max_s"):
        Backoff(2.0, 1.0)


def test_token_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, capacity=100.0, clock=clock)
    assert bucket.try_take(100)
    assert not bucket.try_take(1)
    assert bucket.wait_time(50) == pytest.approx(5.0)
    clock.now += 5.0
    assert bucket.try_take(50)
    clock.now += 1000.0
    assert bucket.available() == 100.0  # capped


def test_token_bucket_lets_an_oversized_item_through_when_full_then_owes() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, capacity=10.0, clock=clock)
    assert bucket.try_take(25)
    assert bucket.available() == -15.0
    assert bucket.wait_time(1) == pytest.approx(16.0)


def test_topics_round_trip_and_refuse_strangers() -> None:
    topic = device_topic("dev-1", "ota/progress")
    assert topic == "edgefleet/v1/dev-1/ota/progress"
    assert parse_topic(topic) == ("dev-1", "ota/progress")
    assert parse_topic("fleet/x/dev-2/cmd", prefix="fleet/x/") == ("dev-2", "cmd")
    for bad in ("edgefleet/v1/dev-1/unknown", "edgefleet/v1/dev-1", "other/dev-1/cmd", "edgefleet/v1/+/cmd"):
        with pytest.raises(ProtocolError) as info:
            parse_topic(bad)
        assert info.value.reason == "wrong_topic"


@pytest.mark.parametrize("device_id", ["", "a/b", "dev+", "#", "has space", "x" * 65, "-leading"])
def test_device_ids_that_cannot_be_one_topic_level_are_refused(device_id: str) -> None:
    with pytest.raises(ProtocolError, match="invalid device id"):
        device_topic(device_id, "status")


def test_subscriptions_for_devices_and_controllers() -> None:
    assert device_subscriptions("d1") == [f"edgefleet/v1/d1/{kind}" for kind in DOWNLINK_KINDS]
    shared = controller_filters(group="ctl", kinds=("results", "status"))
    assert shared == ["$share/ctl/edgefleet/v1/+/results", "$share/ctl/edgefleet/v1/+/status"]
    assert controller_filters(group=None, kinds=("results",)) == ["edgefleet/v1/+/results"]
    with pytest.raises(ProtocolError):
        shared_filter("a/b", "results")


def test_sync_config_defaults_and_refusals(tmp_path: Path) -> None:
    config = SyncConfig()
    assert config.protocol == "mqtt5"
    assert config.qos == 1
    assert config.topic_prefix == "edgefleet/v1"
    assert config.state_path(tmp_path / "store.db") == tmp_path / "store.db.sync.json"
    with pytest.raises(ValidationError, match="extra"):
        SyncConfig.model_validate({"hots": "x"})
    with pytest.raises(ValidationError, match="reconnect_max_s"):
        SyncConfig(reconnect_min_s=5, reconnect_max_s=1)
    with pytest.raises(ValidationError, match="cert_file and key_file"):
        TlsConfig(ca_file=tmp_path / "ca.crt", cert_file=tmp_path / "d.crt")
    with pytest.raises(ValidationError):
        SyncConfig.model_validate({"protocol": "mqtt3"})
    assert "s3cret" not in repr(SyncConfig.model_validate({"username": "u", "password": "s3cret"}))
