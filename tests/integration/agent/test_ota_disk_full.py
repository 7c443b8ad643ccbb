"""A disk that really fills up during an OTA download (issue 16): a tiny tmpfs holds the device's
served bundle and its OTA download directory, the offer passes the free-space check, and a write
fails with a real ENOSPC half-way through. The offer fails with ``disk_full``, nothing a restart
would resume is left, the served bundle is untouched, and a later offer succeeds once space is back.
Where exactly the disk runs out varies, so the precise cases are pinned one by one: a chunk the
disk takes only part of, a chunk written whose record (received.json) cannot be written, and an
offer whose offer.json cannot be written (refused, as a restart could not resume it).

Mounting needs root (the client runs in this process, so an unprivileged user namespace cannot
host it); elsewhere the test is skipped with that reason."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.ota_transfer import DownloadError, PartialDownload, plan_for_file
from edgefleet.cloud_sync.protocol import OtaOfferBody, make_envelope
from edgefleet.runtime.bundle_verify import verify_bundle
from tests.support.broker import MosquittoBroker
from tests.support.ota import DEMO_DIR, OtaRig, versioned_bundle
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

_PAGE = 4096


def _mount(path: Path, size: int, *, remount: bool = False) -> subprocess.CompletedProcess[str]:
    options = f"remount,size={size}" if remount else f"size={size}"
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of this test's own, unmounted afterwards (lazily if a file is still open)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and the mount command; the OTA client runs in-process")
    path = tmp_path / "disk"
    path.mkdir()
    done = _mount(path, 1 << 20)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_a_disk_that_fills_during_the_download_fails_the_offer_and_keeps_the_served_bundle(
    mosquitto: MosquittoBroker, tmp_path: Path, tmpfs: Path
) -> None:
    tar = versioned_bundle(tmp_path, "1.1.0")
    served = tmpfs / "bundles" / DEMO_DIR.name  # the model being served shares the download's disk
    shutil.copytree(DEMO_DIR, served)
    before = _hashes(served)
    ota_dir = tmpfs / "ota"
    ota_dir.mkdir()
    # Room for the bundle and not a page more: the check passes (min_free_bytes = 0), but the
    # client's own plan/offer/state/received files take pages the chunks then lack.
    bundle_pages = -(-tar.stat().st_size // _PAGE) * _PAGE
    resized = _mount(tmpfs, _used_bytes(tmpfs) + bundle_pages, remount=True)
    assert resized.returncode == 0, resized.stderr
    assert shutil.disk_usage(ota_dir).free >= tar.stat().st_size

    rig = OtaRig(mosquitto, tmp_path / "rig", ota_dir=ota_dir, min_free_bytes=0)
    try:
        info = rig.host.register(tar)
        offer = rig.host.offer(rig.device_id, info)
        assert wait_until(lambda: rig.state_of(offer.offer_id) == "failed", fail=False), rig.states()
        state = rig.database.ota_states(rig.device_id)[0]
        assert state.detail is not None
        assert state.detail.startswith("disk_full: "), state.detail
        assert "No space left on device" in state.detail
        assert rig.client.counters["chunks"] >= 1  # it failed mid-download, not at the check
        assert rig.client.counters["refused"] == 0
        assert rig.client.status()["state"] == "failed"
        failed = rig.store.query_events(kind="ota.failed", limit=10)
        assert [e["data"]["reason"] for e in failed] == ["disk_full"]
        # Nothing a restart would resume, no half-written temporary file holding the space.
        assert not (ota_dir / "active").exists()
        assert list(ota_dir.rglob("*")) == []
        assert rig.installer.installed == []
        assert _hashes(served) == before

        # Space comes back: the same client takes the next offer to the end.
        regrown = _mount(tmpfs, _used_bytes(tmpfs) + (1 << 20), remount=True)
        assert regrown.returncode == 0, regrown.stderr
        again = rig.host.offer(rig.device_id, info)
        assert wait_until(lambda: rig.state_of(again.offer_id) == "done", fail=False), rig.states()
        archive, version = rig.installer.installed[0]
        assert version == "1.1.0"
        assert archive.read_bytes() == tar.read_bytes()
        assert _hashes(served) == before
        assert verify_bundle(served, cache_dir=tmp_path / "verify-cache").ok
    finally:
        rig.close()


def _fill_leaving_one_page(disk: Path) -> Path:
    """Take every free page of ``disk`` but one (real writes, then one page given back)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 0
        while True:
            try:
                size += os.pwrite(fd, bytes(_PAGE), size)
            except OSError:
                break
        os.ftruncate(fd, size - _PAGE)
    finally:
        os.close(fd)
    return filler


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_chunk_the_full_disk_takes_only_part_of_is_refused_not_recorded(
    tmp_path: Path, tmpfs: Path
) -> None:
    source = tmp_path / "bundle.bin"
    source.write_bytes(os.urandom(4 * _PAGE))
    plan = plan_for_file(source, 2 * _PAGE)  # a chunk is two pages; one is left
    download = PartialDownload.open(tmpfs / "active", plan, margin_bytes=0)
    _fill_leaving_one_page(tmpfs)
    with pytest.raises(DownloadError) as caught:
        download.accept(0, source.read_bytes()[: 2 * _PAGE])
    assert caught.value.reason == "disk_full"
    assert caught.value.message.startswith("cannot write chunk 0: ")  # the rest of a short write
    assert caught.value.hint is not None
    assert download.received() == set()  # half a chunk on disk is never taken for the chunk
    assert download.missing() == [0, 1]


def test_a_chunk_written_but_not_recordable_is_not_trusted_and_leaves_no_temporary_file(
    tmp_path: Path, tmpfs: Path
) -> None:
    source = tmp_path / "bundle.bin"
    source.write_bytes(os.urandom(2 * _PAGE))
    plan = plan_for_file(source, _PAGE)
    active = tmpfs / "active"
    download = PartialDownload.open(active, plan, margin_bytes=0)
    filler = _fill_leaving_one_page(tmpfs)
    first = source.read_bytes()[:_PAGE]
    with pytest.raises(DownloadError) as caught:  # the chunk takes the last page, its record none
        download.accept(0, first)
    assert caught.value.reason == "disk_full"
    assert "received.json" in caught.value.message
    assert download.received() == set()
    assert _leftovers(active) == []
    filler.unlink()  # space is back: the same chunk is taken and recorded
    assert download.accept(0, first)
    assert download.received() == {0}


def test_an_offer_whose_offer_file_cannot_be_written_is_refused_disk_full(
    mosquitto: MosquittoBroker, tmp_path: Path, tmpfs: Path
) -> None:
    ota_dir = tmpfs / "ota"
    ota_dir.mkdir()
    _fill_leaving_one_page(tmpfs)  # the check passes for a one-page file; plan.json takes that page
    source = tmp_path / "small.bin"
    source.write_bytes(os.urandom(100))
    plan = plan_for_file(source, _PAGE)
    rig = OtaRig(mosquitto, tmp_path / "rig", ota_dir=ota_dir, min_free_bytes=0)
    try:
        body = OtaOfferBody(
            offer_id=f"o-{time.monotonic_ns()}",
            device_id=rig.device_id,
            bundle_name="small",
            bundle_version="1.0.0",
            sha256=plan.sha256,
            size_bytes=plan.size_bytes,
            chunk_bytes=plan.chunk_bytes,
            chunk_count=len(plan.chunks),
            chunk_sha256=list(plan.chunks),
            expires_at=time.time() + 600,
        )
        rig.client.on_offer(make_envelope(rig.device_id, "ota/offer", body))  # as the downlink does
        assert wait_until(lambda: rig.state_of(body.offer_id) == "refused", fail=False), rig.states()
        detail = rig.database.ota_states(rig.device_id)[0].detail
        assert detail is not None
        assert detail.startswith("disk_full: cannot write "), detail
        assert "offer.json" in detail
        assert not (ota_dir / "active").exists()
        assert rig.client.counters["requests"] == 0
    finally:
        rig.close()
