"""The resumable chunk store of the OTA transfer, over a real bundle archive on disk."""

from __future__ import annotations

import hashlib
import random
import tarfile
from pathlib import Path

import pytest

from edgefleet.agent.ota_transfer import ChunkPlan, DownloadError, PartialDownload, chunks_of, plan_for_file

DEMO = Path(__file__).resolve().parents[3] / "models" / "bundles" / "basicmotions-edge-tflite"
CHUNK = 1024


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    if not (DEMO / "manifest.json").is_file():
        pytest.skip("demo bundle not built")
    path = tmp_path / "bundle.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(DEMO, arcname="bundle")
    return path


def all_chunks(archive: Path, plan: ChunkPlan) -> dict[int, bytes]:
    return chunks_of(archive, plan.chunk_bytes, range(len(plan.chunks)))


def test_reordered_and_duplicated_chunks_assemble_the_same_file(archive: Path, tmp_path: Path) -> None:
    plan = plan_for_file(archive, CHUNK)
    chunks = all_chunks(archive, plan)
    order = list(chunks) + list(chunks)[:5]  # every chunk, then five duplicates
    random.Random(7).shuffle(order)
    download = PartialDownload.open(tmp_path / "dl", plan, free_bytes=1 << 40)
    fresh = [download.accept(i, chunks[i]) for i in order]
    assert fresh.count(True) == len(plan.chunks)
    assert fresh.count(False) == 5
    done = download.complete()
    assert (
        hashlib.sha256(done.read_bytes()).hexdigest()
        == plan.sha256
        == hashlib.sha256(archive.read_bytes()).hexdigest()
    )


def test_resume_after_restart_asks_only_for_what_is_missing(archive: Path, tmp_path: Path) -> None:
    plan = plan_for_file(archive, CHUNK)
    chunks = all_chunks(archive, plan)
    first = PartialDownload.open(tmp_path / "dl", plan, free_bytes=1 << 40)
    for i in range(0, len(chunks), 2):
        first.accept(i, chunks[i])
    # A new process (reboot): the same directory and plan resume; only the odd chunks are asked for.
    again = PartialDownload.open(tmp_path / "dl", plan, free_bytes=0)
    assert again.missing() == list(range(1, len(chunks), 2))
    with pytest.raises(DownloadError) as caught:
        again.complete()
    assert caught.value.reason == "incomplete"
    for i in again.missing():
        again.accept(i, chunks[i])
    assert again.complete().read_bytes() == archive.read_bytes()


def test_bad_chunks_are_refused_and_nothing_is_recorded(archive: Path, tmp_path: Path) -> None:
    plan = plan_for_file(archive, CHUNK)
    chunks = all_chunks(archive, plan)
    download = PartialDownload.open(tmp_path / "dl", plan, free_bytes=1 << 40)
    cases = {
        "truncated_chunk": (0, chunks[0][:-1]),
        "bad_chunk_hash": (1, bytes([chunks[1][0] ^ 1]) + chunks[1][1:]),
        "bad_index": (len(chunks), b"x"),
    }
    for reason, (index, data) in cases.items():
        with pytest.raises(DownloadError) as caught:
            download.accept(index, data)
        assert caught.value.reason == reason
    assert download.received() == set()


def test_not_enough_disk_is_refused_before_writing(archive: Path, tmp_path: Path) -> None:
    plan = plan_for_file(archive, CHUNK)
    with pytest.raises(DownloadError) as caught:
        PartialDownload.open(tmp_path / "dl", plan, free_bytes=plan.size_bytes)
    assert caught.value.reason == "disk_full"
    assert caught.value.hint
    assert not (tmp_path / "dl" / "bundle.part").exists()


def test_a_plan_whose_whole_hash_lies_is_refused_at_the_end(archive: Path, tmp_path: Path) -> None:
    plan = plan_for_file(archive, CHUNK)
    lying = plan.model_copy(update={"sha256": "0" * 64})
    download = PartialDownload.open(tmp_path / "dl", lying, free_bytes=1 << 40)
    for i, data in all_chunks(archive, plan).items():
        download.accept(i, data)
    with pytest.raises(DownloadError) as caught:
        download.complete()
    assert caught.value.reason == "bad_sha256"
    assert download.missing() == list(range(len(plan.chunks)))  # starts over


def test_a_plan_with_the_wrong_chunk_count_is_invalid() -> None:
    with pytest.raises(ValueError, match="make 2 chunks"):
        ChunkPlan(sha256="0" * 64, size_bytes=1500, chunk_bytes=1000, chunks=("a" * 64,))
