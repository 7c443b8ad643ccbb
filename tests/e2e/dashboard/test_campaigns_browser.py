"""The OTA campaigns page in headless Chromium, against a real controller (subprocess) fed over a
real Mosquitto by the simulator: a campaign started from the form, stage 2 offered only once stage
1's device reports ``done``, the campaign completed, then rolled back with one click.

The simulator does not install bundles, so the devices' ``ota/status`` and ``ota/progress`` uplinks
(name and tags, then ``done``) are published here as the agent would send them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import OtaProgressBody, StatusBody, make_envelope
from tests.e2e.dashboard.conftest import FleetStack, login, screenshot, wait_for
from tests.support.ota import versioned_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DEVICES = ["sim-a-0000", "sim-a-0001"]


def publish(fleet: FleetStack, device_id: str, kind: str, body: Any) -> None:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"campaign-test-{device_id}",
        protocol=mqtt.MQTTv5,
    )
    client.connect(fleet.broker.host, fleet.broker.port)
    client.loop_start()
    try:
        envelope = make_envelope(device_id, kind, body, message_id=int(time.time() * 1000))  # type: ignore[arg-type]
        info = client.publish(f"edgefleet/v1/{device_id}/{kind}", encode_message(envelope), qos=1)
        info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def campaign(fleet: FleetStack) -> dict[str, Any]:
    views = fleet.get("/api/ota/campaigns")
    assert len(views) == 1, views
    return dict(views[0])


def report_done(fleet: FleetStack, device: dict[str, Any]) -> None:
    body = OtaProgressBody(
        offer_id=device["offer_id"], campaign_id=device["campaign_id"], state="done", progress=1.0
    )
    publish(fleet, device["device_id"], "ota/progress", body)


def test_campaign_from_the_dashboard(browser: Any, fleet: FleetStack, tmp_path: Path) -> None:
    tar = versioned_bundle(tmp_path, "1.1.0")
    registered = httpx.post(
        fleet.base_url + "/api/ota/bundles", json={"path": str(tar)}, headers=fleet.headers, timeout=30
    )
    assert registered.status_code == 201, registered.text
    for index, device in enumerate(DEVICES):
        status = StatusBody(state="online", name=f"Line 1 press {index}", tags=["line-1"])
        publish(fleet, device, "status", status)
    wait_for(
        lambda: (
            {d["device_id"] for d in fleet.get("/api/devices")["devices"] if "line-1" in d["tags"]}
            == set(DEVICES)
        ),
        what="the tags in the registry",
    )

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        login(page, fleet.base_url)
        page.click("nav >> text=Campaigns")
        page.wait_for_url("**/static/campaigns.html")
        page.wait_for_selector("#new-section:not([hidden])")
        page.select_option("#bundle", "basicmotions-edge-tflite@1.1.0")
        page.select_option("#target-kind", "tag")
        page.fill("#target", "line-1")
        page.fill("#stages", "50,100")
        page.click("#new-campaign button[type=submit]")
        page.wait_for_selector("#new-result:has-text('started')")
        row = "#campaigns tbody tr"
        page.wait_for_selector(f"{row} [data-status=running]")
        # Stage 1: the first device offered, the second waits.
        page.wait_for_selector(f"{row} li[data-device=sim-a-0000]:has-text('offered')")
        assert "pending" in page.inner_text(f"{row} li[data-device=sim-a-0001]")
        assert "Line 1 press 0" in page.inner_text(f"{row} li[data-device=sim-a-0000]")

        first = campaign(fleet)["devices"][0]
        report_done(fleet, first)
        page.wait_for_selector(f"{row} li[data-device=sim-a-0000]:has-text('ok')")
        page.wait_for_selector(f"{row} li[data-device=sim-a-0001]:has-text('offered')")
        report_done(fleet, campaign(fleet)["devices"][1])
        page.wait_for_selector(f"{row} [data-status=completed]")
        screenshot(page, "campaigns-completed.png")

        page.click(f"{row} button[data-rollback]")
        page.wait_for_selector(f"{row} [data-status=rolled_back]")
        for device in DEVICES:
            sent = fleet.get(f"/api/devices/{device}/commands")
            assert any(c["name"] == "rollback_model" for c in sent), sent
        assert page.query_selector(f"{row} button[data-rollback]") is None
        assert errors == []
    finally:
        page.close()
