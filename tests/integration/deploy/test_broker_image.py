"""The balena broker image's configuration run by the real mosquitto, without a container engine:
its main file and the shipped conf.d file with the image's paths moved into a temp folder, and
its start script (which must refuse to start without certificates rather than run open)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.broker import find_mosquitto, free_port, wait_for_port
from tests.support.shipped_broker import CONTROLLERS, SHIPPED, SHIPPED_CONF, Client, ShippedBroker

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
IMAGE = REPO / "images" / "broker"


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed; `make test` installs it")


def image_layout(root: Path, pki_from: ShippedBroker) -> tuple[Path, Path, int, int]:
    """The image's files under ``root``; returns (main conf, certs dir, device port, controller port)."""
    certs, data, confd = root / "certs", root / "data", root / "conf.d"
    for folder in (certs, data, confd):
        folder.mkdir(parents=True)
    for name in ("ca.crt", "ca.crl", "broker.crt", "broker.key"):
        shutil.copy(pki_from.ca_dir / name, certs / name)
    shutil.copy(pki_from.passwd, certs / "controllers.passwd")
    device_port, controller_port = free_port(), free_port()
    conf = SHIPPED_CONF.read_text()
    for old, new in {
        "listener 8883\n": f"listener {device_port} 127.0.0.1\n",
        "listener 8884\n": f"listener {controller_port} 127.0.0.1\n",
        "/etc/mosquitto/certs/": f"{certs}/",
        "/etc/mosquitto/edgefleet-devices.acl": str(SHIPPED / "devices.acl"),
        "/etc/mosquitto/edgefleet-controllers.acl": str(SHIPPED / "controllers.acl"),
        # The image links this path to the certs volume's controllers.passwd.
        "/etc/mosquitto/edgefleet-controllers.passwd": str(certs / "controllers.passwd"),
    }.items():
        assert old in conf
        conf = conf.replace(old, new)
    (confd / "edgefleet.conf").write_text(conf)
    main = (IMAGE / "mosquitto.conf").read_text()
    for old, new in {
        "/mosquitto/data/": f"{data}/",
        "/mosquitto/config/conf.d": str(confd),
        "log_dest stdout": f"log_dest file {root / 'mosquitto.log'}",
    }.items():
        assert old in main
        main = main.replace(old, new)
    if os.geteuid() == 0:
        main += "user root\n"
    (root / "mosquitto.conf").write_text(main)
    return root / "mosquitto.conf", certs, device_port, controller_port


def start_script(conf: Path, certs: Path) -> subprocess.Popen[bytes]:
    binary = find_mosquitto()
    assert binary is not None
    env = {
        **os.environ,
        "EDGEFLEET_BROKER_CONF": str(conf),
        "EDGEFLEET_BROKER_CERTS": str(certs),
        "PATH": f"{Path(binary).parent}:{os.environ.get('PATH', '')}",
    }
    return subprocess.Popen(
        ["sh", str(IMAGE / "start.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_the_broker_image_config_serves_devices_and_controllers(tmp_path: Path) -> None:
    pki = ShippedBroker(tmp_path / "pki", CONTROLLERS)  # certificates only; never started
    conf, certs, device_port, controller_port = image_layout(tmp_path / "image", pki)
    process = start_script(conf, certs)
    try:
        wait_for_port(device_port, timeout=15)
        wait_for_port(controller_port, timeout=15)
        cert, key = pki.device("balena-dev-1")
        device = Client("balena-dev-1").with_certificate(pki.ca_cert, cert, key).connect(device_port)
        controller = Client("c").with_password(pki.ca_cert, "controller-1", CONTROLLERS["controller-1"])
        controller.connect(controller_port)
        try:
            assert device.connected.is_set()
            assert controller.connected.is_set()
        finally:
            device.close()
            controller.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)


def test_the_start_script_refuses_to_run_without_certificates(tmp_path: Path) -> None:
    pki = ShippedBroker(tmp_path / "pki", CONTROLLERS)
    conf, certs, _, _ = image_layout(tmp_path / "image", pki)
    (certs / "broker.key").unlink()
    (certs / "controllers.passwd").unlink()
    process = start_script(conf, certs)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 78
    text = err.decode()
    assert "missing in" in text
    assert "broker.key" in text
    assert "controllers.passwd" in text
    assert "hint:" in text
