"""Drift in the dashboard, in headless Chromium, against a real controller fed over a real Mosquitto.

The reports are the agent's own (``DriftReport.body``): the real BasicMotions recording streamed
through the device's drift monitor (``edgefleet drift check``'s :func:`run_check`, the same
monitor, windowing and thresholds the agent uses) with acc_y offset by one reference std:

* ``drift-a``: clean, then the fault, then clean again: an alert period on acc_y that has ended;
* ``drift-b``: clean, then the fault until its last report: drifted now;
* ``drift-c``: online, no drift report at all: "no drift data".

The controller's ``[drift] reference_bundles`` names the shipped bundles, so the fleet panel
shows merged live vs reference histograms per channel.

A second controller holds one miswired device, ``drift-w`` (acc_y's gain x1.5, gyr_x and gyr_y
swapped), so the fleet panel shows ``scale`` and ``swap`` over their thresholds undiluted by
clean devices (docs/drift.md, Fleet).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.agent.drift_monitor import DriftSettings
from edgefleet.cli.drift import run_check
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import make_envelope
from edgefleet.runtime.bundle import load_bundle
from tests.conftest import MODELS_DIR
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

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

BUNDLE = MODELS_DIR / "bundles" / "basicmotions-edge-tflite"
RECORDING = MODELS_DIR / "data" / "basicmotions_test_stream.npz"
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
NO_VALUE = "\u2013"  # what the dashboard's fmtNumber shows for null (an en dash)


def agent_reports(segments: list[bool], fault: str = "offset") -> list[dict[str, Any]]:
    """Drift message bodies for a recording made of clean (False) and faulty (True) segments.

    ``fault``: "offset" (acc_y offset by one reference std) or "wiring" (acc_y's gain x1.5, and
    gyr_x and gyr_y swapped)."""
    bundle = load_bundle(BUNDLE)
    reference = bundle.manifest.reference
    assert reference is not None
    clean = np.tile(np.load(RECORDING)["samples"].astype(np.float64), (3, 1))
    faulty = clean.copy()
    if fault == "offset":
        faulty[:, 1] += reference.channels[1].std
    else:
        faulty[:, 1] *= 1.5
        faulty[:, [3, 4]] = faulty[:, [4, 3]]
    data = np.concatenate([faulty if fault else clean for fault in segments])
    reports = run_check(bundle, data, DriftSettings())
    now = time.time()
    bodies = []
    for i, report in enumerate(reports):
        body = report.body(
            model_name=bundle.manifest.name, model_version=str(bundle.manifest.version), stream="imu"
        )
        # Spread over the last minutes, one report every 20 s, the latest just now.
        body["window_end"] = now - (len(reports) - 1 - i) * 20
        body["window_start"] = body["window_end"] - 19
        bodies.append(body)
    return bodies


def publish(stack: FleetStack, device_id: str, kind: str, bodies: list[dict[str, Any]]) -> None:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"drift-test-{device_id}",
        protocol=mqtt.MQTTv5,
    )
    client.connect(stack.broker.host, stack.broker.port)
    client.loop_start()
    try:
        for index, body in enumerate(bodies):
            envelope = make_envelope(device_id, kind, body, message_id=index + 1)  # type: ignore[arg-type]
            info = client.publish(f"edgefleet/v1/{device_id}/{kind}", encode_message(envelope), qos=1)
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


@contextmanager
def drift_stack(
    workdir: Path, drift: dict[str, list[dict[str, Any]]], online: list[str]
) -> Iterator[FleetStack]:
    """Mosquitto and a controller whose ``reference_bundles`` names the shipped bundles, holding
    ``drift`` (device: report bodies) and an online status from each device in ``online``."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed; `make test` installs it with apt-get when run as root")
    (workdir / "broker").mkdir()
    broker = MosquittoBroker(workdir / "broker").start()
    http_port = free_port()
    config = write_controller_config(workdir, broker.port, http_port)
    bundles = str(MODELS_DIR / "bundles")
    config.write_text(
        config.read_text().replace("reference_bundles = []", f"reference_bundles = [{bundles!r}]")
    )
    assert bundles in config.read_text()
    env = {
        **os.environ,
        "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": ADMIN_TOKEN,
        "EDGEFLEET_CONTROLLER_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    log = (workdir / "controller.log").open("wb")
    controller = subprocess.Popen(
        edgefleet_command("controller", "serve", "--config", str(config)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    stack = FleetStack(broker, controller, f"http://127.0.0.1:{http_port}", config)
    try:
        wait_for(
            lambda: _healthy(stack, workdir),
            timeout=30,
            what="the controller's /healthz",
        )
        for device, bodies in drift.items():
            publish(stack, device, "drift", bodies)
        for device in online:
            publish(
                stack, device, "status", [{"state": "online", "model_name": "x", "model_version": "1.0.0"}]
            )
        wait_for(
            lambda: (
                all(
                    len(stack.get(f"/api/devices/{device}/drift", since=0, limit=1000)) == len(bodies)
                    for device, bodies in drift.items()
                )
                and stack.get("/api/dashboard/overview")["counts"]["total"] == len(drift) + len(online)
            ),
            timeout=30,
            what="every drift report stored",
        )
        yield stack
    finally:
        stop_process(controller)
        log.close()
        broker.stop()


@pytest.fixture(scope="module")
def drift_fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FleetStack, dict[str, list[dict[str, Any]]]]]:
    sent = {"drift-a": agent_reports([False, True, False]), "drift-b": agent_reports([False, True])}
    with drift_stack(tmp_path_factory.mktemp("drift-fleet"), sent, online=["drift-c"]) as stack:
        yield stack, sent


@pytest.fixture(scope="module")
def wiring_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetStack]:
    sent = {"drift-w": agent_reports([True], fault="wiring")}
    with drift_stack(tmp_path_factory.mktemp("wiring-fleet"), sent, online=[]) as stack:
        yield stack


def _healthy(stack: FleetStack, workdir: Path) -> bool:
    import httpx

    assert stack.controller.poll() is None, (workdir / "controller.log").read_text()
    try:
        return httpx.get(stack.base_url + "/healthz", timeout=2).json().get("mqtt_connected") is True
    except httpx.HTTPError:
        return False


@contextmanager
def logged_in_page(browser: Any, stack: FleetStack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(stack.base_url) else elsewhere.append(r.url))
    login(page, stack.base_url)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not elsewhere, f"requests that left the controller: {elsewhere}"


@pytest.fixture
def page(browser: Any, drift_fleet: tuple[FleetStack, Any]) -> Iterator[Any]:
    with logged_in_page(browser, drift_fleet[0]) as page:
        yield page


@pytest.fixture
def wiring_page(browser: Any, wiring_fleet: FleetStack) -> Iterator[Any]:
    with logged_in_page(browser, wiring_fleet) as page:
        yield page


def panel_scores(page: Any) -> dict[str, dict[str, tuple[str, bool]]]:
    """Per channel of the fleet panel, per metric: its text and whether it is marked over."""
    shown: dict[str, dict[str, list[Any]]] = page.eval_on_selector_all(
        "#fleet-drift-channels figure",
        """fs => Object.fromEntries(fs.map(f => [f.dataset.channel, Object.fromEntries(
            [...f.querySelectorAll(".scores [data-metric]")].map(m => [
                m.dataset.metric, [m.textContent, m.classList.contains("over")]]))]))""",
    )
    return {
        channel: {metric: (str(text), bool(over)) for metric, (text, over) in cells.items()}
        for channel, cells in shown.items()
    }


def expected_text(channel: dict[str, Any], metric: str) -> str:
    label = {"psi": "PSI", "js": "JS", "ks": "KS"}.get(metric, metric)
    value = channel[metric]
    text = f"{label} {value:.3f}" if value is not None else f"{label} {NO_VALUE}"
    if metric == "swap" and channel["swap_with"]:
        text += f" (with {channel['swap_with']})"
    return text


def assert_panel_shows(page: Any, group: dict[str, Any]) -> None:
    """Every channel's five scores as the API merged them, the ones in its ``over`` marked."""
    shown = panel_scores(page)
    assert sorted(shown) == sorted(c["name"] for c in group["channels"])
    for channel in group["channels"]:
        cells = shown[channel["name"]]
        assert list(cells) == ["psi", "js", "ks", "scale", "swap"]
        for metric, (text, over) in cells.items():
            assert text == expected_text(channel, metric), (channel["name"], metric)
            assert over == (metric in channel["over"]), (channel["name"], metric, channel["over"])


def alerted(bodies: list[dict[str, Any]], channel: str) -> list[bool]:
    return [next(c["drifted"] for c in b["channels"] if c["channel"] == channel) for b in bodies]


def test_the_reports_themselves_carry_one_alert_period_on_acc_y(drift_fleet: tuple[FleetStack, Any]) -> None:
    _, sent = drift_fleet
    flags = alerted(sent["drift-a"], "acc_y")
    # Flagged for a stretch, then cleared: exactly one period, and no other channel flagged.
    assert True in flags
    assert flags[-1] is False
    starts = sum(1 for before, now in zip([False, *flags], flags, strict=False) if now and not before)
    assert starts == 1
    assert all(not any(alerted(sent["drift-a"], c)) for c in CHANNELS if c != "acc_y")
    assert alerted(sent["drift-b"], "acc_y")[-1] is True


def test_device_page_charts_each_channel_and_marks_the_alert_period(
    page: Any, drift_fleet: tuple[FleetStack, Any]
) -> None:
    stack, _ = drift_fleet
    page.goto(stack.base_url + "/static/device.html?id=drift-a")
    page.wait_for_selector("#chart-drift svg polyline[data-series=acc_y]")
    drawn = page.eval_on_selector_all("#chart-drift svg polyline", "ls => ls.map(l => l.dataset.series)")
    assert sorted(set(drawn)) == sorted(CHANNELS)
    bands = page.eval_on_selector_all(
        "#chart-drift svg rect.alert-band", "rs => rs.map(r => r.dataset.channel)"
    )
    assert bands == ["acc_y"]
    label = page.get_attribute("#chart-drift svg", "aria-label") or ""
    assert "1 alert periods (acc_y)" in label
    assert page.locator("#chart-drift .legend").inner_text().count("alert period") == 1
    # The device's latest report cleared the alert: the badge says so.
    page.wait_for_selector("#drift.not-drifted")
    screenshot(page, "dashboard-device-drift-channels.png")


def test_overview_drift_column_shows_the_latest_state(page: Any, drift_fleet: tuple[FleetStack, Any]) -> None:
    page.wait_for_selector("tr[data-device=drift-c]")
    # The only badge of a row besides its status is the Drift column's.
    cells = {
        device: page.locator(f"tr[data-device={device}] td .badge:not(.status)").inner_text()
        for device in ("drift-a", "drift-b", "drift-c")
    }
    assert cells["drift-a"] == "not drifted"
    assert cells["drift-b"].startswith("drifted")
    assert cells["drift-c"] == "no drift data"
    assert page.inner_text("#count-drifted") == "1"


def test_fleet_panel_shows_live_against_reference_per_channel(
    page: Any, drift_fleet: tuple[FleetStack, Any]
) -> None:
    stack, sent = drift_fleet
    page.wait_for_selector("#fleet-drift-channels figure[data-channel=acc_y]")
    assert page.locator("#fleet-drift-version option").all_inner_texts() == ["basicmotions-edge-tflite 1.0.0"]
    reports = len(sent["drift-a"]) + len(sent["drift-b"])
    assert page.inner_text("#fleet-drift-summary") == f"({reports} reports from 2 devices)"
    acc_y = page.locator("#fleet-drift-channels figure[data-channel=acc_y]")
    assert "over" in (acc_y.get_attribute("class") or "")
    assert acc_y.locator("rect.live").count() == 10
    assert acc_y.locator("rect.reference").count() == 10
    assert "PSI" in acc_y.locator(".scores").inner_text()
    over = page.eval_on_selector_all(
        "#fleet-drift-channels figure.over", "fs => fs.map(f => f.dataset.channel)"
    )
    assert over == ["acc_y"]
    assert "acc_y" in page.inner_text("#fleet-drift-note")
    # The panel's numbers are the API's merged scores.
    merged = stack.get("/api/fleet/drift", since=-86400)["groups"][0]
    psi = next(c["psi"] for c in merged["channels"] if c["name"] == "acc_y")
    assert f"PSI {psi:.3f}" in acc_y.locator(".scores").inner_text()
    # scale and swap beside PSI/JS/KS on every channel; an offset changes neither.
    assert_panel_shows(page, merged)
    acc_x = next(c for c in merged["channels"] if c["name"] == "acc_x")
    assert acc_x["scale"] is not None
    assert acc_x["swap"] is not None
    assert (
        f"scale {acc_x['scale']:.3f}"
        in page.locator("#fleet-drift-channels figure[data-channel=acc_x] .scores").inner_text()
    )
    assert all("scale" not in c["over"] and "swap" not in c["over"] for c in merged["channels"])
    page.locator("#fleet-drift").scroll_into_view_if_needed()
    screenshot(page, "dashboard-fleet-drift.png")


def test_fleet_panel_marks_a_gain_by_scale_and_swapped_axes_by_swap(
    wiring_page: Any, wiring_fleet: FleetStack
) -> None:
    page = wiring_page
    page.wait_for_selector("#fleet-drift-channels figure[data-channel=gyr_y] [data-metric=swap]")
    [group] = wiring_fleet.get("/api/fleet/drift", since=-86400)["groups"]
    over = {c["name"]: c["over"] for c in group["channels"]}
    # The seeding: the gain shows only as scale, the swap of two gyroscope axes as swap (gyr_y
    # keeps its spread; gyr_x's changes against the others' and is over on scale too).
    assert over["acc_y"] == ["scale"]
    assert over["gyr_y"] == ["swap"]
    assert set(over["gyr_x"]) == {"scale", "swap"}
    assert [name for name in ("acc_x", "acc_z", "gyr_z") if over[name]] == []
    assert_panel_shows(page, group)
    cells = panel_scores(page)
    assert cells["acc_y"]["scale"][1] is True
    assert [m for m, (_, marked) in cells["acc_y"].items() if marked] == ["scale"]
    assert cells["gyr_y"]["swap"][0].endswith("(with gyr_x)")
    assert cells["gyr_x"]["swap"][0].endswith("(with gyr_y)")
    assert [m for m, (_, marked) in cells["gyr_y"].items() if marked] == ["swap"]
    assert cells["acc_x"]["swap"] == ("swap 0.000", False)
    marked = page.eval_on_selector_all(
        "#fleet-drift-channels figure.over", "fs => fs.map(f => f.dataset.channel)"
    )
    assert marked == ["acc_y", "gyr_x", "gyr_y"]
    page.locator("#fleet-drift").scroll_into_view_if_needed()
    screenshot(page, "dashboard-fleet-drift-wiring.png")
