"""A bundle .tar cut short is reported as truncated, not as "holds no manifest.json"."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edgefleet.errors import BundleError
from edgefleet.runtime.bundle import load_bundle

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "bundles" / "basicmotions-edge-tflite-1.0.0.tar"


def member_offsets(path: Path) -> list[tuple[str, int]]:
    with tarfile.open(path) as tar:
        return [(m.name, m.offset) for m in tar.getmembers()]


def cut(tmp_path: Path, size: int) -> Path:
    target = tmp_path / "cut.tar"
    target.write_bytes(SHIPPED.read_bytes()[:size])
    return target


def test_the_whole_archive_loads(tmp_path: Path) -> None:
    copy = tmp_path / "whole.tar"
    shutil.copy(SHIPPED, copy)
    assert load_bundle(copy, cache_dir=tmp_path / "cache").manifest.name == "basicmotions-edge-tflite"


@pytest.mark.parametrize("boundary", [1, 2])
def test_a_cut_at_a_member_boundary_says_truncated(tmp_path: Path, boundary: int) -> None:
    members = member_offsets(SHIPPED)
    name_before = members[boundary - 1][0]
    archive = cut(tmp_path, members[boundary][1])
    with pytest.raises(BundleError) as info:
        load_bundle(archive, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert f"is truncated: it ends after member {name_before!r}" in message
    assert "holds no manifest.json" not in message
    assert "copy the .tar again" in message


def test_the_cli_says_truncated_too(tmp_path: Path) -> None:
    archive = cut(tmp_path, member_offsets(SHIPPED)[-1][1])
    result = subprocess.run(
        [sys.executable, "-m", "edgefleet", "bundle", "verify", str(archive)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "truncated" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
