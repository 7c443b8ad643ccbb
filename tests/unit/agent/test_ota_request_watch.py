"""The main loop's look for `edgefleet ota install` requests: one stat while nothing changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgefleet.agent import ota_local
from edgefleet.agent.ota_local import RequestWatch, submit


def _age(directory: Path, seconds: float) -> None:
    """Set the directory's mtime ``seconds`` in the past (as if nothing changed since)."""
    st = directory.stat()
    os.utime(directory, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every listing take_requests does, by state dir."""
    seen: list[Path] = []
    real = ota_local.take_requests

    def counted(state_dir: Path) -> list[ota_local.LocalRequest]:
        seen.append(state_dir)
        return real(state_dir)

    monkeypatch.setattr(ota_local, "take_requests", counted)
    return seen


def test_no_requests_directory_means_no_requests_and_no_listing(tmp_path: Path, listings: list[Path]) -> None:
    watch = RequestWatch()
    assert watch.take(tmp_path) == []
    assert listings == []


def test_a_request_is_taken_once_and_an_old_unchanged_directory_is_not_listed_again(
    tmp_path: Path, listings: list[Path]
) -> None:
    watch = RequestWatch()
    request_id = submit(tmp_path, tmp_path / "bundle")
    taken = watch.take(tmp_path)
    assert [r.request_id for r in taken] == [request_id]
    requests = tmp_path / "ota" / "requests"
    assert watch.take(tmp_path) == []  # just changed (the request was removed): listed
    assert len(listings) == 2
    _age(requests, 10)
    assert watch.take(tmp_path) == []  # listed once more: now known old and empty
    assert len(listings) == 3
    for _ in range(5):
        assert watch.take(tmp_path) == []
    assert len(listings) == 3  # unchanged: one stat each


def test_a_request_written_after_a_skipped_look_is_taken(tmp_path: Path, listings: list[Path]) -> None:
    watch = RequestWatch()
    requests = tmp_path / "ota" / "requests"
    requests.mkdir(parents=True)
    _age(requests, 10)
    assert watch.take(tmp_path) == []
    assert watch.take(tmp_path) == []
    assert len(listings) == 1
    request_id = submit(tmp_path, tmp_path / "bundle")
    assert [r.request_id for r in watch.take(tmp_path)] == [request_id]


def test_a_recently_changed_directory_is_listed_every_time(tmp_path: Path, listings: list[Path]) -> None:
    # Its mtime may not move again for a write in the same timestamp tick (coarse file systems).
    watch = RequestWatch()
    (tmp_path / "ota" / "requests").mkdir(parents=True)
    for _ in range(3):
        assert watch.take(tmp_path) == []
    assert len(listings) == 3


def test_an_unchanged_directory_is_listed_again_after_relist_s(
    tmp_path: Path, listings: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = RequestWatch()
    requests = tmp_path / "ota" / "requests"
    requests.mkdir(parents=True)
    _age(requests, 10)
    monkeypatch.setattr(RequestWatch, "RELIST_S", -1.0)  # every look is past the relist time
    watch.take(tmp_path)
    watch.take(tmp_path)
    watch.take(tmp_path)
    assert len(listings) == 3
