"""The OTA transfer over a real broker: the controller's OtaHost on a real SQLite database, the
device's real store, SyncService and OtaClient, and a real installer that loads the archive as a
bundle (model, tensors, canaries). Bad inputs are refused and the installer never sees them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.agent.ota_transfer import chunks_of, plan_for_file
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import OtaChunkBody, OtaOfferBody, make_envelope
from tests.support.broker import MosquittoBroker
from tests.support.ota import DEMO_NAME, OtaRig, versioned_bundle
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def rig(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[OtaRig]:
    made = OtaRig(mosquitto, tmp_path)
    yield made
    made.close()


class Publisher:
    """Plays a controller (or an attacker on the broker) that publishes raw downlink messages."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def offer(self, device: str, body: OtaOfferBody) -> None:
        self.send(
            f"edgefleet/v1/{device}/ota/offer", encode_message(make_envelope(device, "ota/offer", body))
        )

    def chunk(self, device: str, offer_id: str, index: int, data: bytes) -> None:
        body = OtaChunkBody(
            offer_id=offer_id, index=index, data=data, sha256=hashlib.sha256(data).hexdigest()
        )
        self.send(
            f"edgefleet/v1/{device}/ota/chunk", encode_message(make_envelope(device, "ota/chunk", body))
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _offer_body(device: str, tar: Path, *, chunk_bytes: int = 4096, **changes: object) -> OtaOfferBody:
    plan = plan_for_file(tar, chunk_bytes)
    fields: dict[str, object] = {
        "offer_id": f"o-{time.monotonic_ns()}",
        "device_id": device,
        "bundle_name": DEMO_NAME,
        "bundle_version": "1.1.0",
        "sha256": plan.sha256,
        "size_bytes": plan.size_bytes,
        "chunk_bytes": chunk_bytes,
        "chunk_count": len(plan.chunks),
        "chunk_sha256": list(plan.chunks),
        "expires_at": time.time() + 600,
    }
    fields.update(changes)
    return OtaOfferBody.model_validate(fields)


def _events(rig: OtaRig, kind: str) -> list[dict[str, Any]]:
    return rig.store.query_events(kind=kind, limit=500)


def test_an_offered_bundle_is_fetched_in_windows_checked_and_handed_to_the_installer(
    rig: OtaRig, tmp_path: Path
) -> None:
    tar = versioned_bundle(tmp_path, "1.1.0")
    info = rig.host.register(tar)
    assert (info.name, info.version, info.size_bytes) == (DEMO_NAME, "1.1.0", tar.stat().st_size)
    offer = rig.host.offer(rig.device_id, info)
    assert offer.chunk_count > rig.client.window  # more than one request window
    assert wait_until(lambda: rig.state_of(offer.offer_id) == "done", fail=False), rig.states()
    archive, version = rig.installer.installed[0]
    assert version == "1.1.0"
    assert archive.read_bytes() == tar.read_bytes()
    assert rig.client.counters["chunks"] == offer.chunk_count
    assert rig.client.counters["bad_chunks"] == 0
    assert rig.host.stats.chunks_sent == offer.chunk_count  # nothing sent twice
    state = rig.database.ota_states(rig.device_id)[0]
    assert (state.bundle_name, state.bundle_version, state.progress) == (DEMO_NAME, "1.1.0", 1.0)
    assert state.metrics == {"canary": 1.0}


def _stall_after_first_window(rig: OtaRig, tar: Path) -> OtaOfferBody:
    """Offer with a host that grants one window and then nothing: part of the chunks arrive."""
    rig.host.max_window = 3
    rig.host.chunks_per_s = 1e-6
    offer = rig.host.offer(rig.device_id, rig.host.register(tar))
    assert wait_until(lambda: rig.client.counters["chunks"] == 3)
    time.sleep(1.5)  # a re-request after the chunk timeout is refused by the rate limit
    assert rig.client.counters["chunks"] == 3
    assert rig.host.stats.rate_limited >= 1
    return offer


def test_after_an_agent_restart_only_the_missing_chunks_are_asked_for(rig: OtaRig, tmp_path: Path) -> None:
    offer = _stall_after_first_window(rig, versioned_bundle(tmp_path, "1.1.0"))
    rig.client.stop()  # the agent stops mid-transfer ...
    rig.host.chunks_per_s = 1000.0
    restarted = rig.make_client(window=4, chunk_timeout_s=1.0)  # ... and starts again
    try:
        assert wait_until(lambda: rig.state_of(offer.offer_id) == "done", fail=False), rig.states()
        assert restarted.counters["chunks"] == offer.chunk_count - 3
        assert rig.host.stats.chunks_sent == offer.chunk_count  # the first 3 were not sent again
    finally:
        restarted.stop()


def test_after_the_broker_drops_the_transfer_resumes_where_it_stopped(
    rig: OtaRig, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    offer = _stall_after_first_window(rig, versioned_bundle(tmp_path, "1.1.0"))
    mosquitto.stop()
    assert wait_until(lambda: not rig.sync.state().connected, 15)
    rig.host.chunks_per_s = 1000.0
    mosquitto.start()
    assert wait_until(lambda: rig.state_of(offer.offer_id) == "done", 60, fail=False), rig.states()
    assert rig.client.counters["chunks"] == offer.chunk_count
    assert rig.host.stats.chunks_sent == offer.chunk_count


@pytest.fixture
def quiet_rig(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[OtaRig]:
    """A rig whose host serves no chunks: the test plays the sender (or an attacker)."""
    made = OtaRig(mosquitto, tmp_path, chunk_timeout_s=30.0, serve_chunks=False)
    yield made
    made.close()


@pytest.mark.parametrize("case", ["truncated", "wrong_sha256", "duplicated", "reordered"])
def test_bad_chunks_are_refused_and_the_right_ones_still_complete_the_bundle(
    quiet_rig: OtaRig, mosquitto: MosquittoBroker, tmp_path: Path, case: str
) -> None:
    rig = quiet_rig
    tar = versioned_bundle(tmp_path, "1.1.0")
    body = _offer_body(rig.device_id, tar)
    chunks = chunks_of(tar, body.chunk_bytes, range(body.chunk_count))
    sender = Publisher(mosquitto)
    try:
        sender.offer(rig.device_id, body)
        assert wait_until(lambda: rig.client.status()["state"] == "downloading")
        order = list(range(body.chunk_count))
        if case == "truncated":
            sender.chunk(rig.device_id, body.offer_id, 0, chunks[0][:-1])
        elif case == "wrong_sha256":
            sender.chunk(rig.device_id, body.offer_id, 1, bytes(len(chunks[1])))
        elif case == "reordered":
            order.reverse()
        for index in order:
            sender.chunk(rig.device_id, body.offer_id, index, chunks[index])
            if case == "duplicated":
                sender.chunk(rig.device_id, body.offer_id, index, chunks[index])
        assert rig.installer.done.wait(30)
    finally:
        sender.close()
    assert rig.installer.installed[0][0].read_bytes() == tar.read_bytes()
    counters = rig.client.counters
    assert counters["bad_chunks"] == (1 if case in ("truncated", "wrong_sha256") else 0)
    if case == "duplicated":  # the last chunk's copy comes after the download is complete: stale
        assert wait_until(lambda: counters["duplicates"] + counters["stale_chunks"] == body.chunk_count)
        assert counters["duplicates"] >= body.chunk_count - 1
    else:
        assert counters["duplicates"] == 0
    if counters["bad_chunks"]:
        reason = {"truncated": "truncated_chunk", "wrong_sha256": "bad_chunk_hash"}[case]
        assert wait_until(lambda: any(e["data"]["reason"] == reason for e in _events(rig, "ota.bad_chunk")))


def test_a_bundle_whose_whole_sha256_is_wrong_is_refused_and_never_installed(
    quiet_rig: OtaRig, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    rig = quiet_rig
    tar = versioned_bundle(tmp_path, "1.1.0")
    body = _offer_body(rig.device_id, tar, sha256="0" * 64)  # every chunk matches, the whole does not
    chunks = chunks_of(tar, body.chunk_bytes, range(body.chunk_count))
    sender = Publisher(mosquitto)
    try:
        sender.offer(rig.device_id, body)
        for index, data in chunks.items():
            sender.chunk(rig.device_id, body.offer_id, index, data)
        assert wait_until(lambda: rig.state_of(body.offer_id) == "failed", fail=False), rig.states()
    finally:
        sender.close()
    state = rig.database.ota_states(rig.device_id)[0]
    assert state.detail is not None
    assert state.detail.startswith("bad_sha256")
    assert rig.installer.installed == []
    assert not (rig.work / "device" / "ota" / "active").exists()  # nothing of it is kept


def _refused(rig: OtaRig, offer_id: str) -> str:
    assert wait_until(lambda: rig.state_of(offer_id) == "refused", fail=False), rig.states()
    detail = rig.database.ota_states(rig.device_id)[0].detail
    assert detail is not None
    assert rig.installer.installed == []
    assert rig.host.stats.chunks_sent == 0
    return detail


def test_a_downgrade_is_refused_unless_the_offer_allows_it(rig: OtaRig, tmp_path: Path) -> None:
    info = rig.host.register(versioned_bundle(tmp_path, "0.9.0"))  # the device serves 1.0.0
    offer = rig.host.offer(rig.device_id, info)
    assert _refused(rig, offer.offer_id).startswith("downgrade: ")
    allowed = rig.host.offer(rig.device_id, info, allow_downgrade=True)
    assert wait_until(lambda: rig.state_of(allowed.offer_id) == "done", fail=False), rig.states()
    assert rig.installer.installed[0][1] == "0.9.0"


def test_an_expired_offer_is_refused(rig: OtaRig, tmp_path: Path) -> None:
    offer = rig.host.offer(
        rig.device_id, rig.host.register(versioned_bundle(tmp_path, "1.1.0")), expires_in_s=-1
    )
    assert _refused(rig, offer.offer_id).startswith("expired: ")


def test_an_offer_naming_another_device_is_refused(
    rig: OtaRig, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    body = _offer_body("someone-else", versioned_bundle(tmp_path, "1.1.0"))
    sender = Publisher(mosquitto)
    try:
        sender.offer(rig.device_id, body)  # on this device's topic, but the body names another
        assert _refused(rig, body.offer_id).startswith("wrong_device: ")
    finally:
        sender.close()


def test_an_offer_that_does_not_fit_the_disk_is_refused_before_the_first_byte(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    # No small tmpfs here: the free-space reading is replaced, the check is the real one.
    rig = OtaRig(mosquitto, tmp_path, free_bytes=lambda path: 40_000)
    try:
        info = rig.host.register(versioned_bundle(tmp_path, "1.1.0"))
        offer = rig.host.offer(rig.device_id, info)
        assert _refused(rig, offer.offer_id).startswith("disk_full: not enough free disk")
        assert not (rig.work / "device" / "ota" / "active" / "bundle.part").exists()
        assert rig.client.counters["requests"] == 0
    finally:
        rig.close()


def test_a_malformed_offer_is_refused_by_the_downlink_and_fetches_nothing(
    rig: OtaRig, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    good = _offer_body(rig.device_id, versioned_bundle(tmp_path, "1.1.0"))
    doc = good.model_dump(mode="python")
    doc["chunk_count"] += 1  # the plan no longer adds up
    envelope = make_envelope(rig.device_id, "ota/offer", good).model_copy(update={"body": good})
    raw = encode_message(envelope)
    sender = Publisher(mosquitto)
    try:
        import msgpack
        import zstandard

        body = raw[4:] if raw[3] == 0 else zstandard.ZstdDecompressor().decompress(raw[4:])
        packed = msgpack.unpackb(body, raw=False)
        packed["b"]["chunk_count"] = doc["chunk_count"]
        sender.send(
            f"edgefleet/v1/{rig.device_id}/ota/offer", raw[:2] + bytes((raw[2], 0)) + msgpack.packb(packed)
        )
        sender.send(f"edgefleet/v1/{rig.device_id}/ota/offer", b"not an edgefleet frame")
        assert wait_until(lambda: len(_events(rig, "sync.downlink_refused")) == 2)
    finally:
        sender.close()
    assert rig.client.counters["offers"] == 0
    assert not (rig.work / "device" / "ota" / "active").exists()
