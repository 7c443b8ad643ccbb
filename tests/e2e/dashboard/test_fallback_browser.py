"""The cloud fallback in the dashboard, in headless Chromium, from real results.

A real ``edgefleet agent run`` replays held-out watch recordings through the int8 edge model with
``[fallback]`` on; ``edgefleet controller serve`` with ``[inference]`` on answers its unsure windows
with the watch-cloud bundle and stores what the agent syncs. The overview's cloud-share column, the
fleet panel and the device panel must show the share and reasons of those stored results.

Budget use and cloud latency come from the agent's ``status.fallback``, which the device-side
branch (issue 15, helper C) adds to the agent; until it is merged, this test publishes that status
the way the agent will (same field, same keys), as the device's own status message.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import make_envelope
from tests.e2e.agent.agentproc import AgentProcess
from tests.e2e.dashboard.conftest import (
    ADMIN_PASSWORD,
    ADMIN_TOKEN,
    FleetStack,
    edgefleet_command,
    login,
    screenshot,
    stop_process,
    wait_for,
    write_controller_config,
)
from tests.support.broker import MosquittoBroker, find_mosquitto, free_port
from tests.support.watch_fallback import watch_fallback_agent

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

MODELS = Path(__file__).resolve().parents[3] / "models"
DEVICE = "watch-dash"
STATUS_FALLBACK = {
    "sent": 57,
    "answered_cloud": 55,
    "timeouts": 2,
    "budget_refused": 0,
    "offline": 0,
    "deferred": 0,
    "late_answers": 1,
    "requests_last_min": 45,
    "bytes_last_hour": 150_000,
    "max_requests_per_min": 60,
    "max_bytes_per_hour": 1_000_000,
    "latency_p50_ms": 18.5,
    "latency_p95_ms": 64.0,
    "reasons": {"low_confidence": 57},
}


def publish_status(broker: MosquittoBroker) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="dashboard-fallback-status", protocol=mqtt.MQTTv5
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        body = {"state": "online", "fallback": STATUS_FALLBACK}
        envelope = make_envelope(DEVICE, "status", body, message_id=0)
        client.publish(f"edgefleet/v1/{DEVICE}/status", encode_message(envelope), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_cloud_share_reasons_budget_and_latency_are_shown(browser: object, tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = MosquittoBroker(tmp_path / "broker").start()
    config = write_controller_config(tmp_path, broker.port, free_port())
    text = config.read_text()
    inactive = 'enabled = false\n# bundle = "models/bundles/watch-cloud"'
    assert inactive in text, "the example config's [inference] block changed"
    config.write_text(
        text.replace(inactive, f'enabled = true\nbundle = "{MODELS / "bundles" / "watch-cloud"}"')
    )
    env = {**os.environ, "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": ADMIN_TOKEN}
    env["EDGEFLEET_CONTROLLER_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    log = (tmp_path / "controller.log").open("wb")
    controller = subprocess.Popen(
        edgefleet_command("controller", "serve", "--config", str(config)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    port = int(text.split("[http]")[1].split("port = ")[1].split("\n")[0])
    stack = FleetStack(broker, controller, f"http://127.0.0.1:{port}", config)
    agent_config, _ = watch_fallback_agent(
        tmp_path, host=broker.host, port=broker.port, device_id=DEVICE, latency_slo_ms=5000, recordings=2
    )
    try:

        def fallback() -> dict[str, Any]:
            response = httpx.get(f"{stack.base_url}/api/devices/{DEVICE}/fallback", headers=stack.headers)
            if response.status_code == 404:  # the device has sent nothing yet
                return {"cloud_answers": 0, "results": 0, "status": None}
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result

        def controller_ready() -> bool:
            assert controller.poll() is None, (tmp_path / "controller.log").read_text()
            try:
                return bool(stack.get("/healthz")["mqtt_connected"])
            except Exception:
                return False

        wait_for(controller_ready, timeout=30, what="the controller")
        with AgentProcess(agent_config, tmp_path / "agent.log"):
            wait_for(
                lambda: fallback()["cloud_answers"] and fallback()["results"] >= 40,
                timeout=120,
                what="cloud answers synced",
            )
        publish_status(broker)
        wait_for(lambda: fallback()["status"] is not None, what="the fallback status stored")
        stats = fallback()
        results, cloud = int(stats["results"]), int(stats["cloud_answers"])
        assert 0 < cloud < results  # some windows went to the cloud, not all
        share = f"{100 * cloud / results:.1f} %"
        reasons = stats["reasons"]
        assert isinstance(reasons, list)
        assert {(r["reason"], r["answered_by"]) for r in reasons} == {("low_confidence", "cloud")}
        assert stack.get("/api/hard-examples", device_id=DEVICE)["total"] == cloud  # kept with both answers

        context = browser.new_context()  # type: ignore[attr-defined]
        page = context.new_page()
        login(page, stack.base_url)
        cell = page.locator(f'td[data-cloud-for="{DEVICE}"]')
        cell.wait_for()
        wait_for(lambda: cell.inner_text() == share, what="the overview's cloud share cell")
        panel = page.locator("#fleet-fallback-facts")
        assert panel.locator('[data-fact="cloud_share"]').inner_text() == share
        assert f"low_confidence (cloud): {cloud}" in panel.locator('[data-fact="reasons"]').inner_text()
        assert panel.locator('[data-fact="at_budget"]').inner_text() == "0 of 1 reporting"
        assert panel.locator('[data-fact="latency"]').inner_text() == "18.5 / 64.0 ms"
        fleet_row = page.locator(f'#fleet-fallback-devices tr[data-device="{DEVICE}"]')
        assert share in fleet_row.inner_text()
        assert "75 %" in fleet_row.inner_text()  # 45 of 60 requests this minute
        screenshot(page, "dashboard-fallback-fleet.png")

        page.goto(f"{stack.base_url}/static/device.html?id={DEVICE}")
        facts = page.locator("#fallback-facts")
        facts.locator('[data-fact="cloud_share"]').wait_for()
        share_fact = facts.locator('[data-fact="cloud_share"]')
        wait_for(lambda: share_fact.inner_text() == share, what="the device panel's cloud share")
        assert facts.locator('[data-fact="cloud_share"]').inner_text() == share
        assert f"{cloud} / {results}" in facts.locator('[data-fact="counts"]').inner_text()
        assert f"low_confidence (cloud): {cloud}" in facts.locator('[data-fact="reasons"]').inner_text()
        assert facts.locator('[data-fact="requests_budget"]').inner_text() == "45 / 60 (75 %)"
        assert facts.locator('[data-fact="bytes_budget"]').inner_text() == "150000 / 1000000 (15 %)"
        assert facts.locator('[data-fact="latency"]').inner_text() == "18.5 / 64.0 ms"
        assert "timeouts 2" in facts.locator('[data-fact="counters"]').inner_text()
        screenshot(page, "dashboard-fallback-device.png")
        context.close()
    finally:
        stop_process(controller)
        log.close()
        broker.stop()
