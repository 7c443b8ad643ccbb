"""A real fleet for the dashboard's browser tests: Mosquitto, `edgefleet controller serve`, simulators.

`sim-a-0002` also gets drift reports (published like an agent would), so drift shows up too.

The stack is module-scoped: starting it once and sharing it keeps the browser tests quick. Tests
that change it (killing a simulator) run last in their module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import make_envelope
from tests.support.broker import MosquittoBroker, find_mosquitto, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "dashboard-e2e-admin-token-0123456789"
ADMIN_PASSWORD = "dashboard-e2e-password"
VIEWER_PASSWORD = "dashboard-e2e-viewer"
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def edgefleet_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgefleet", *args]


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class FleetStack:
    broker: MosquittoBroker
    controller: subprocess.Popen[bytes]
    base_url: str
    config: Path
    simulators: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.base_url + path, params=params, headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def publish_drift(self, device_id: str, scores: list[float], threshold: float = 0.25) -> None:
        """Drift reports for ``device_id`` as its agent would send them (the simulator sends none)."""
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"dashboard-test-{device_id}",
            protocol=mqtt.MQTTv5,
        )
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            now = time.time()
            for index, psi in enumerate(scores):
                at = now - (len(scores) - index) * 2
                body = {"window_start": at - 2, "window_end": at, "psi": psi, "drifted": psi > threshold}
                envelope = make_envelope(device_id, "drift", body, message_id=int(now * 1000) + index)
                info = client.publish(f"edgefleet/v1/{device_id}/drift", encode_message(envelope), qos=1)
                info.wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()

    def publish_raw(self, device_id: str, messages: list[tuple[str, int]], *, floor: int) -> None:
        """Telemetry/status messages with chosen message ids; each status carries ``floor``."""
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"dashboard-test-{device_id}",
            protocol=mqtt.MQTTv5,
        )
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            for kind, message_id in messages:
                body: dict[str, Any] = (
                    {"state": "online", "outbox_floor": floor}
                    if kind == "status"
                    else {"samples": [{"ts": time.time(), "name": "cpu_percent", "value": 1.0}]}
                )
                envelope = make_envelope(device_id, kind, body, message_id=message_id)  # type: ignore[arg-type]
                info = client.publish(f"edgefleet/v1/{device_id}/{kind}", encode_message(envelope), qos=1)
                info.wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()

    def start_simulator(self, prefix: str, devices: int) -> None:
        self.simulators[prefix] = subprocess.Popen(
            edgefleet_command(
                "simulate",
                "--devices",
                str(devices),
                "--rate",
                "2",
                "--port",
                str(self.broker.port),
                "--id-prefix",
                prefix,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def write_controller_config(directory: Path, mqtt_port: int, http_port: int) -> Path:
    example = subprocess.run(
        edgefleet_command("controller", "example-config"), capture_output=True, text=True, check=True
    ).stdout
    text = (
        example.replace("port = 1883", f"port = {mqtt_port}")
        .replace("port = 8080", f"port = {http_port}")
        .replace("stream_interval_s = 1.0", "stream_interval_s = 0.5")
        .replace("batch_max_delay_ms = 150", "batch_max_delay_ms = 50")
    )
    config = directory / "controller.toml"
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetStack]:
    """Mosquitto + a real controller + simulators `sim-a` (3 devices) and `sim-b` (2 devices)."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed; `make test` installs it with apt-get when run as root")
    workdir = tmp_path_factory.mktemp("dashboard-fleet")
    (workdir / "broker").mkdir()
    broker = MosquittoBroker(workdir / "broker").start()
    http_port = free_port()
    config = write_controller_config(workdir, broker.port, http_port)
    env = {
        **os.environ,
        "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": ADMIN_TOKEN,
        "EDGEFLEET_CONTROLLER_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DASHBOARD_VIEWER_PASSWORD": VIEWER_PASSWORD,
    }
    subprocess.run(
        edgefleet_command(
            "controller",
            "user",
            "create",
            "viewer",
            "--role",
            "read",
            "--password-env",
            "DASHBOARD_VIEWER_PASSWORD",
            "--config",
            str(config),
        ),
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    log = (workdir / "controller.log").open("wb")
    controller = subprocess.Popen(
        edgefleet_command("controller", "serve", "--config", str(config)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    stack = FleetStack(broker, controller, f"http://127.0.0.1:{http_port}", config)
    try:

        def healthy() -> bool:
            assert controller.poll() is None, (workdir / "controller.log").read_text()
            try:
                return httpx.get(stack.base_url + "/healthz", timeout=2).json().get("mqtt_connected") is True
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=30, what="the controller's /healthz")
        stack.start_simulator("sim-a", 3)
        stack.start_simulator("sim-b", 2)

        def all_reporting() -> bool:
            page = stack.get("/api/dashboard/overview")
            return page["counts"]["online"] == 5 and all(d["throughput"] for d in page["devices"])

        wait_for(all_reporting, timeout=30, what="5 simulated devices online with telemetry")
        stack.publish_drift("sim-a-0002", [0.05, 0.08, 0.12, 0.2, 0.31, 0.42])
        wait_for(
            lambda: stack.get("/api/dashboard/overview", drifted="true")["matched"] == 1,
            what="sim-a-0002's drift verdict in the registry",
        )
        yield stack
    finally:
        for process in stack.simulators.values():
            stop_process(process)
        stop_process(controller)
        log.close()
        broker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed in this venv")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under artifacts/ (kept for people to look at)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, base_url: str, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    page.goto(base_url + "/")
    page.wait_for_url("**/static/login.html**")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#password-form button[type=submit]")
    page.wait_for_url("**/static/index.html**")
