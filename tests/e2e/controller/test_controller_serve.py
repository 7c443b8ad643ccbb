"""`edgefleet controller serve` as a real process, driven over HTTP and MQTT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.controller.conftest import connect_device, wait_for
from tests.support.broker import MosquittoBroker, free_port

pytestmark = pytest.mark.e2e

TOKEN = "e2e-admin-token-0123456789abcdef"


def edgefleet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefleet", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_serve_ingests_and_answers_the_api(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "controller.toml"
    example = edgefleet("controller", "example-config")
    assert example.returncode == 0
    text = example.stdout.replace("port = 1883", f"port = {mosquitto.port}").replace(
        "port = 8080", f"port = {port}"
    )
    config.write_text(text)
    env = {**os.environ, "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefleet", "controller", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    device = None
    try:

        def healthy() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=2).json().get("mqtt_connected") is True
            except httpx.HTTPError:
                assert process.poll() is None, (
                    f"controller exited early: {process.stdout and process.stdout.read()}"
                )
                return False

        wait_for(healthy, timeout=30, what="the controller to serve /healthz")
        device = connect_device(mosquitto, "e2e-dev-1")
        device.publish("status", {"state": "online", "agent_version": "0.1.0"}, retain=True)

        def listed() -> list[str]:
            body = httpx.get(base + "/api/devices", headers=headers, timeout=5).json()
            return [d["device_id"] for d in body["devices"]]

        assert wait_for(listed, what="the device in GET /api/devices") == ["e2e-dev-1"]
        assert httpx.get(base + "/api/devices", timeout=5).status_code == 401
        cli = edgefleet("controller", "devices", "--config", str(config))
        assert cli.returncode == 0, cli.stderr
        assert "e2e-dev-1" in cli.stdout
        assert "online" in cli.stdout
    finally:
        if device is not None:
            device.close()
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"controller did not stop on SIGTERM; output:\n{output}")
    assert process.returncode == 0, output
    assert "Traceback" not in output


def test_serve_with_a_bad_config_says_why(tmp_path: Path) -> None:
    config = tmp_path / "controller.toml"
    config.write_text("[http]\nprot = 1\n")
    started = time.monotonic()
    result = edgefleet("controller", "serve", "--config", str(config))
    assert result.returncode == 1
    assert "http.prot" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


def test_serve_refuses_a_busy_port_and_an_unreachable_database(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "controller.toml"
        config.write_text(f"[http]\nport = {port}\n[mqtt]\nport = {free_port()}\n")
        result = edgefleet("controller", "serve", "--config", str(config))
    assert result.returncode == 1
    assert f"could not listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    unreachable = edgefleet(
        "controller", "devices", "--database-url", f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/x"
    )
    assert unreachable.returncode == 1
    assert "cannot connect to PostgreSQL" in unreachable.stderr
    assert "s3cret" not in unreachable.stderr  # the password is redacted
