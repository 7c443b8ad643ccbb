"""The documented install steps: Debian's mosquitto.conf includes conf.d/, where the shipped
edgefleet.conf goes. The shipped file must not repeat what Debian's main file sets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.broker import find_mosquitto, free_port, wait_for_port
from tests.support.shipped_broker import DEBIAN_MAIN_CONF, SHIPPED, SHIPPED_CONF, ShippedBroker
from tests.support.tls import make_pki

pytestmark = pytest.mark.integration

DEBIAN_KEYS = {"pid_file", "persistence", "persistence_location", "log_dest", "include_dir"}


def test_the_shipped_file_sets_nothing_debians_main_file_sets() -> None:
    keys = {
        line.split()[0] for line in SHIPPED_CONF.read_text().splitlines() if line.strip() and line[0] != "#"
    }
    assert keys & DEBIAN_KEYS == set()


def test_the_shipped_file_starts_inside_debians_layout(broker: ShippedBroker) -> None:
    # The module's broker runs exactly that layout; it is up, and says which files it loaded.
    assert broker.process is not None
    assert broker.process.poll() is None
    assert "Config loaded from" in broker.log()
    assert (broker.root / "conf.d" / "edgefleet.conf").exists()


def test_evidence_repeating_persistence_location_stops_debians_broker(tmp_path: Path) -> None:
    """Why the old "copy mosquitto.conf.example to conf.d/" step was wrong (it set it again)."""
    binary = find_mosquitto()
    assert binary is not None
    for sub in ("run", "lib", "log", "conf.d"):
        (tmp_path / sub).mkdir()
    (tmp_path / "conf.d" / "old.conf").write_text(f"persistence true\npersistence_location {tmp_path}/lib/\n")
    main = tmp_path / "mosquitto.conf"
    main.write_text(DEBIAN_MAIN_CONF.format(root=tmp_path).replace("log_dest file", "# log_dest file"))
    done = subprocess.run([binary, "-c", str(main)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "Duplicate persistence_location value" in done.stderr + done.stdout


def test_the_legacy_single_listener_example_also_starts_inside_debians_layout(tmp_path: Path) -> None:
    binary = find_mosquitto()
    assert binary is not None
    pki = make_pki(tmp_path / "certs")
    for sub in ("run", "lib", "log", "conf.d"):
        (tmp_path / sub).mkdir()
    port = free_port()
    text = (SHIPPED / "mosquitto.conf.example").read_text()
    for old, new in {
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
        "/etc/mosquitto/certs/": f"{pki.root}/",
        "/etc/mosquitto/edgefleet.acl": str(SHIPPED / "acl.example"),
    }.items():
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "conf.d" / "edgefleet.conf").write_text(text)
    main = tmp_path / "mosquitto.conf"
    main.write_text(DEBIAN_MAIN_CONF.format(root=tmp_path) + "user root\n")
    process = subprocess.Popen(
        [binary, "-c", str(main)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, timeout=15)
    finally:
        process.terminate()
        process.wait(timeout=10)
