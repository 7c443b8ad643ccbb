"""The controller's OTA host on a real database (SQLite, and PostgreSQL when present) with real
bundle files: registration checks, windowed and rate-limited chunk answers, progress records, and
the HTTP routes in-process."""

from __future__ import annotations

import io
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import OtaChunkBody, make_envelope
from edgefleet.controller.api import ControllerContext, create_app
from edgefleet.controller.auth import create_token
from edgefleet.controller.commands import CommandService
from edgefleet.controller.config import ControllerConfig
from edgefleet.controller.dal import Database
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.ota_hosting import OtaError, OtaHost
from edgefleet.controller.records import IngestMessage, StatusUpdate
from tests.support.ota import DEMO_NAME, versioned_bundle
from tests.unit.controller.db_fixtures import DB_KINDS, throwaway_database

pytestmark = pytest.mark.integration


@pytest.fixture(params=DB_KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with throwaway_database(request.param, tmp_path) as (db, _config):
        yield db


class Sent(list[tuple[str, bytes]]):
    def publish(self, topic: str, payload: bytes) -> bool:
        self.append((topic, payload))
        return True

    def chunks(self) -> list[OtaChunkBody]:
        out = []
        for topic, payload in self:
            body = decode_message(topic, payload).body
            if isinstance(body, OtaChunkBody):
                out.append(body)
        return out


def _request(device: str, offer_id: str, indices: list[int]) -> tuple[str, bytes]:
    envelope = make_envelope(device, "ota/chunk_request", {"offer_id": offer_id, "indices": indices})
    return f"edgefleet/v1/{device}/ota/chunk_request", encode_message(envelope)


def _subdir(root: Path, name: str) -> Path:
    (root / name).mkdir()
    return root / name


def _tampered(source: Path, out_path: Path) -> Path:
    """``source`` with one byte of its model flipped (the manifest's sha256 no longer matches)."""
    with tarfile.open(source) as src, tarfile.open(out_path, "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member)
            assert data is not None
            raw = bytearray(data.read())
            if member.name.endswith(".tflite"):
                raw[-1] ^= 0xFF
            out.addfile(member, io.BytesIO(bytes(raw)))
    return out_path


def test_registration_checks_the_bundle_and_keeps_versions_immutable(
    database: Database, tmp_path: Path
) -> None:
    host = OtaHost(database, Sent().publish, chunk_bytes=4096)
    info = host.register(versioned_bundle(tmp_path, "1.1.0"))
    assert (info.name, info.version, info.signed_key_id) == (DEMO_NAME, "1.1.0", None)
    assert database.list_ota_bundles() == [info]
    assert host.register(Path(info.path)) == info  # the same file again: nothing changes

    not_a_tar = tmp_path / "notes.tar"
    not_a_tar.write_text("hello")
    with pytest.raises(OtaError, match=r"is not a bundle \.tar file"):
        host.register(not_a_tar)

    tampered = _tampered(versioned_bundle(_subdir(tmp_path, "t"), "1.2.0"), tmp_path / "tampered.tar")
    with pytest.raises(OtaError, match="failed its checks") as info_error:
        host.register(tampered)
    assert info_error.value.status == 400

    other = _subdir(tmp_path, "other")
    rebuilt = versioned_bundle(other, "1.1.0")
    with tarfile.open(rebuilt, "a") as tar:  # same name and version, different bytes
        extra = other / "README"
        extra.write_text("rebuilt")
        tar.add(extra, arcname="README")
    with pytest.raises(OtaError, match="already registered") as conflict:
        host.register(rebuilt)
    assert conflict.value.status == 409


def test_chunk_requests_are_windowed_rate_limited_and_only_for_the_offered_device(
    database: Database, tmp_path: Path
) -> None:
    sent = Sent()
    host = OtaHost(database, sent.publish, chunk_bytes=1024, max_window=4, chunks_per_s=1e-6)
    info = host.register(versioned_bundle(tmp_path, "1.1.0"))
    offer = host.offer("dev-1", info)
    assert offer.chunk_count > 10
    sent.clear()

    host.handle(*_request("dev-1", offer.offer_id, list(range(10))))
    chunks = sent.chunks()
    assert [c.index for c in chunks] == [0, 1, 2, 3]  # one window
    assert host.stats.rate_limited == 6
    tar = Path(info.path).read_bytes()
    assert all(c.data == tar[c.index * 1024 : (c.index + 1) * 1024] for c in chunks)
    assert all(topic == "edgefleet/v1/dev-1/ota/chunk" for topic, _ in sent)

    sent.clear()
    host.handle(*_request("dev-1", offer.offer_id, [4, 5]))
    assert sent == []  # the bucket is empty until it refills
    host.chunks_per_s = 1e6
    host.handle(*_request("dev-1", offer.offer_id, [4, 5, 4, 10_000]))
    assert [c.index for c in sent.chunks()] == [4, 5]  # duplicates and indices outside the plan dropped
    assert host.stats.refused["bad_index"] == 1

    sent.clear()
    host.handle(*_request("dev-2", offer.offer_id, [0]))  # another device asks for dev-1's offer
    host.handle(*_request("dev-1", "no-such-offer", [0]))
    host.handle("edgefleet/v1/dev-1/ota/chunk_request", b"garbage")
    assert sent == []
    assert host.stats.refused["unknown_offer"] == 2
    assert host.stats.refused["malformed"] == 1


def test_a_restarted_host_still_answers_an_offer_it_sent(database: Database, tmp_path: Path) -> None:
    first = OtaHost(database, Sent().publish, chunk_bytes=4096)
    offer = first.offer("dev-1", first.register(versioned_bundle(tmp_path, "1.1.0")))
    sent = Sent()
    second = OtaHost(database, sent.publish, chunk_bytes=4096)  # a new process: nothing in memory
    second.handle(*_request("dev-1", offer.offer_id, [0]))
    assert [c.index for c in sent.chunks()] == [0]


def test_progress_is_recorded_per_device_and_offer_and_served_over_http(
    database: Database, tmp_path: Path
) -> None:
    host = OtaHost(database, Sent().publish, chunk_bytes=4096)
    tar = versioned_bundle(tmp_path, "1.1.0")
    offer = host.offer("dev-1", host.register(tar), campaign_id="c-7")
    for step, progress in (("received", 0.0), ("downloading", 0.5), ("done", 1.0)):
        body = {"offer_id": offer.offer_id, "state": step, "progress": progress, "bundle_version": "1.1.0"}
        if step == "done":
            body["metrics"] = {"latency_ms": 1.5}
        host.handle(
            "edgefleet/v1/dev-1/ota/progress", encode_message(make_envelope("dev-1", "ota/progress", body))
        )
    forged = make_envelope("dev-2", "ota/progress", {"offer_id": offer.offer_id, "state": "failed"})
    host.handle("edgefleet/v1/dev-2/ota/progress", encode_message(forged))
    assert host.stats.refused["wrong_device"] == 1
    [state] = database.ota_states("dev-1")
    assert (state.state, state.progress, state.campaign_id, state.bundle_name) == (
        "done",
        1.0,
        "c-7",
        DEMO_NAME,
    )
    assert state.metrics == {"latency_ms": 1.5}
    assert database.ota_states("dev-2") == []

    config = ControllerConfig()
    database.ingest(
        [IngestMessage("dev-1", None, "status", 1.0, status=StatusUpdate(True, 1.0))],
        result_bucket_s=60,
    )
    context = ControllerContext(
        config=config,
        database=database,
        commands=CommandService(database, lambda topic, payload: None),
        changes=FleetChanges(),
        ota=host,
    )
    admin = {"Authorization": f"Bearer {create_token(database, 'admin', 'admin')}"}
    reader = {"Authorization": f"Bearer {create_token(database, 'read', 'viewer')}"}
    with TestClient(create_app(context)) as client:
        states = client.get("/api/devices/dev-1/ota", headers=reader)
        assert states.status_code == 200
        assert states.json()[0]["state"] == "done"
        assert client.get("/api/devices/nobody/ota", headers=reader).status_code == 404
        newer = versioned_bundle(_subdir(tmp_path, "n"), "1.2.0")
        assert client.post("/api/ota/bundles", json={"path": str(newer)}, headers=reader).status_code == 403
        created = client.post("/api/ota/bundles", json={"path": str(newer)}, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json()["version"] == "1.2.0"
        missing = client.post("/api/ota/bundles", json={"path": str(tmp_path / "none.tar")}, headers=admin)
        assert missing.status_code == 400
        assert "is not a bundle .tar file" in missing.json()["message"]
        assert missing.json()["hint"]
        listed = client.get("/api/ota/bundles", headers=reader).json()
        assert [b["version"] for b in listed] == ["1.1.0", "1.2.0"]
