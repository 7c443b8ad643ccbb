"""deploy/install.sh in a throw-away root: user, venv, config, unit; idempotent; uninstall."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
INSTALL = REPO / "deploy/install.sh"


def run_install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # The new venv gets edgefleet itself from this checkout (--no-deps keeps the test offline and fast);
    # its third-party dependencies come from the test environment's site-packages.
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    env["PYTHON"] = shutil.which("python3") or sys.executable
    return subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--source", str(REPO), "--pip-arg=--no-deps", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def tree(root: Path) -> dict[str, str]:
    listing = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if "/venv/" in rel or "__pycache__" in rel:
            continue
        listing[rel] = path.read_text() if path.is_file() and not path.is_symlink() else "<dir-or-link>"
    return listing


def verify_unit(root: Path, unit: Path, tmp_path: Path) -> None:
    """systemd-analyze verify with the unit's executables mapped into the throw-away root."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    text = unit.read_text().replace("ExecStart=/opt/", f"ExecStart={root}/opt/")
    tmp_path.mkdir(parents=True, exist_ok=True)
    mapped = tmp_path / unit.name
    mapped.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(mapped)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd-analyze warned: {result.stderr}"


@pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd (passwd package) not installed")
def test_install_is_idempotent_verifies_and_uninstalls(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = run_install(root)
    assert first.returncode == 0, first.stdout + first.stderr
    unit = root / "etc/systemd/system/edgefleet-agent.service"
    assert "ExecStart=/opt/edgefleet/venv/bin/edgefleet agent run" in unit.read_text()
    assert (root / "etc/systemd/system/multi-user.target.wants/edgefleet-agent.service").is_symlink()
    assert "edgefleet:" in (root / "etc/passwd").read_text()
    config = root / "etc/edgefleet/agent.toml"
    assert config.is_file()
    venv_edgefleet = root / "opt/edgefleet/venv/bin/edgefleet"
    check = subprocess.run(
        [str(venv_edgefleet), "config", "check", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]},
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    verify_unit(root, unit, tmp_path)

    # An operator's edit survives a re-run, and nothing else changes.
    config.write_text(config.read_text() + "\n# operator was here\n")
    before = tree(root)
    second = run_install(root)
    assert second.returncode == 0, second.stderr
    assert tree(root) == before

    (root / "var/lib/edgefleet/store.db").write_bytes(b"data")
    removed = run_install(root, "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists()
    assert not (root / "opt/edgefleet").exists()
    assert (root / "var/lib/edgefleet/store.db").read_bytes() == b"data", "data kept without --purge"
    assert config.exists()

    purged = run_install(root, "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not (root / "var/lib/edgefleet").exists()
    assert "edgefleet:" not in (root / "etc/passwd").read_text()


def test_install_refuses_unknown_options(tmp_path: Path) -> None:
    result = run_install(tmp_path, "--frobnicate")
    assert result.returncode == 2
    assert "unknown option '--frobnicate'" in result.stderr


def test_shipped_unit_verifies(tmp_path: Path) -> None:
    source = (REPO / "deploy/systemd/edgefleet-agent.service").read_text()
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=edgefleet",
    ):
        assert key in source, key
    unit = tmp_path / "edgefleet-agent.service"
    unit.write_text(
        source.replace("@PREFIX@/venv/bin/edgefleet", str(Path(sys.executable).parent / "edgefleet"))
    )
    verify_unit(Path("/"), unit, tmp_path / "mapped")
