"""The dashboard in headless Chromium against a real controller, broker and simulated devices.

Order matters: the last test kills the `sim-b` simulator.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.dashboard.conftest import (
    ADMIN_TOKEN,
    VIEWER_PASSWORD,
    FleetStack,
    login,
    screenshot,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ONLINE_ROWS = "document.querySelectorAll('#devices tbody tr[data-online=true]').length"
OFFLINE_ROWS = "document.querySelectorAll('#devices tbody tr[data-online=false]').length"
CHART_METRICS = ("throughput", "latency", "cpu", "memory", "temperature", "fallback", "writes", "results")


@pytest.fixture
def page(browser: Any, fleet: FleetStack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The pages run under a strict Content-Security-Policy: a violation is logged as a console error.
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    # Devices and servers run without internet: every request must stay on the controller.
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(fleet.base_url) else elsewhere.append(r.url))
    login(page, fleet.base_url)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not elsewhere, f"requests that left the controller: {elsewhere}"


def table_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all("#devices tbody tr", "rows => rows.map(r => r.dataset.device)")
    return ids


def test_pages_need_a_login(browser: Any, fleet: FleetStack) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(fleet.base_url + "/static/device.html?id=sim-a-0000")
        page.wait_for_url("**/static/login.html?next=**")
        page.fill("#password", "not-the-password")
        page.click("#password-form button[type=submit]")
        page.wait_for_selector("#login-error:not([hidden])")
        assert "Wrong user name or password" in page.inner_text("#login-error")
        page.fill("#password", "dashboard-e2e-password")
        page.click("#password-form button[type=submit]")
        # Back where the user wanted to go.
        page.wait_for_url("**/static/device.html?id=sim-a-0000")
        page.wait_for_selector("#status.online")
        # Signing out ends the session on the server: the pages ask for a login again.
        page.click("#logout")
        # The sign-out button goes to the login page; a refresh of the page that was in flight
        # when the session ended may get there first, with ?next= back to the device page.
        page.wait_for_url(re.compile(r".*/static/login\.html(\?next=.*)?$"))
        page.goto(fleet.base_url + "/static/index.html")
        page.wait_for_url("**/static/login.html?next=**")
    finally:
        context.close()


def test_overview_lists_the_fleet_with_totals(page: Any, fleet: FleetStack) -> None:
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 5")
    assert table_ids(page) == [f"sim-a-{i:04d}" for i in range(3)] + [f"sim-b-{i:04d}" for i in range(2)]
    page.wait_for_function("() => document.getElementById('count-online').textContent === '5'")
    assert page.inner_text("#count-drifted") == "1"
    assert page.locator("tr[data-device=sim-a-0002] .badge.drifted").inner_text() == "drifted (0.42)"
    assert page.inner_text("#count-total") == "5"
    assert page.inner_text("#count-offline") == "0"
    throughput = float(page.inner_text("#count-throughput"))
    assert throughput > 0
    first = page.locator("#devices tbody tr").first
    assert first.locator(".badge.status").inner_text() == "online"
    assert "basicmotions-sim 1.0.0" in first.inner_text()
    page.wait_for_selector("#live[data-mode=live]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#devices td[data-results]')]"
        ".every(c => Number(c.dataset.results) > 0)"
    )
    screenshot(page, "dashboard-overview.png")


def test_filters_and_sorting(page: Any, fleet: FleetStack) -> None:
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 5")
    page.fill("#search", "SIM-B")
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 2")
    assert table_ids(page) == ["sim-b-0000", "sim-b-0001"]
    assert "search=SIM-B" in page.url  # the view survives a reload
    page.fill("#search", "")
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 5")

    page.select_option("#filter-drift", "true")
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 1")
    assert table_ids(page) == ["sim-a-0002"]
    page.select_option("#filter-drift", "")
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 5")

    page.select_option("#filter-online", "false")
    page.wait_for_selector("#empty:not([hidden])")
    assert table_ids(page) == []
    page.select_option("#filter-online", "true")
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 5")

    device_header = page.locator("th[data-sort=device_id]")
    device_header.locator("button").click()
    page.wait_for_function(
        "() => document.querySelector('#devices tbody tr').dataset.device === 'sim-b-0001'"
    )
    assert device_header.get_attribute("aria-sort") == "descending"
    assert table_ids(page) == sorted(table_ids(page), reverse=True)

    page.locator("th[data-sort=p95_latency_ms] button").click()
    page.wait_for_selector("th[data-sort=p95_latency_ms][aria-sort=descending]")
    page.wait_for_url("**sort=p95_latency_ms**")

    def latencies() -> list[float]:
        texts: list[str] = page.eval_on_selector_all(
            "#devices tbody tr td:nth-child(5)", "cells => cells.map(c => c.textContent)"
        )
        return [float(t.replace(",", "")) for t in texts]

    # Live refreshes may change values between reads; the order within one render is what counts.
    values = wait_for(lambda: (v := latencies()) and v == sorted(v, reverse=True) and v, what="sorted rows")
    assert len(values) == 5


def test_device_page_draws_charts_and_sends_commands(page: Any, fleet: FleetStack) -> None:
    page.click("a[href='/static/device.html?id=sim-a-0001']")
    page.wait_for_url("**/static/device.html?id=sim-a-0001")
    page.wait_for_selector("#device-title:text('sim-a-0001')")
    assert page.inner_text("#status") == "online"
    for chart in CHART_METRICS:
        page.wait_for_function(
            f"() => Number(document.querySelector('#chart-{chart} svg').dataset.points) > 1"
        )
        assert page.locator(f"#chart-{chart} svg :is(polyline, circle.point, rect.bar)").count() >= 1
    # Three latency percentiles, three lines.
    assert page.locator("#chart-latency svg polyline").count() >= 3
    # The simulator sends no drift reports: the chart says so instead of drawing nothing.
    assert "no data" in (page.text_content("#chart-drift svg") or "")
    assert page.locator("#events tbody tr").count() >= 1

    # A long range reads aggregates plus the raw samples not yet folded into them.
    def raw_tail(response: Any) -> bool:
        url: str = response.url
        return "metric=throughput_windows_per_s" in url and "resolution=raw" in url and "since=-" not in url

    with page.expect_response(raw_tail) as tail:
        page.click("button[data-range='86400']")
    assert tail.value.ok
    page.wait_for_function("() => Number(document.querySelector('#chart-throughput svg').dataset.points) > 1")
    page.click("button[data-range='900']")

    page.click("button[data-command=report_status]")
    page.wait_for_selector("#command-result:text('report_status: sent')")
    # The simulator acknowledges; the ack reaches the page through the live stream.
    page.wait_for_selector("#command-history tbody tr:has-text('report_status') .badge.done")
    # The device's own words sit beside the outcome.
    assert "report_status done" in page.inner_text("#command-history tbody tr:has-text('report_status')")
    screenshot(page, "dashboard-device.png")


def test_device_page_charts_drift_scores_and_marks_drifted_reports(page: Any, fleet: FleetStack) -> None:
    page.goto(fleet.base_url + "/static/device.html?id=sim-a-0002")
    page.wait_for_selector("#drift.drifted")
    assert page.inner_text("#drift") == "drift detected"
    page.wait_for_function("() => Number(document.querySelector('#chart-drift svg').dataset.points) === 6")
    # psi 0.31 and 0.42 are over the 0.25 threshold: two red marks.
    assert page.locator("#chart-drift svg circle.mark").count() == 2
    assert "PSI 0.420" in (page.get_attribute("#chart-drift svg", "aria-label") or "")
    screenshot(page, "dashboard-device-drift.png")


def test_devices_without_drift_reports_say_no_drift_data(page: Any, fleet: FleetStack) -> None:
    # The simulator sends no drift reports: such a device is "no drift data", never "stable".
    fleet.publish_drift("sim-b-0000", [0.03])  # one report under the threshold: checked, not drifted
    wait_for(
        lambda: any(
            d["device_id"] == "sim-b-0000" and d["drift_at"] is not None
            for d in fleet.get("/api/dashboard/overview")["devices"]
        ),
        what="sim-b-0000's drift report in the overview",
    )
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 5")
    badge = "tr[data-device={}] td .badge:not(.status)"
    page.wait_for_selector(badge.format("sim-b-0000") + ".not-drifted")
    assert page.locator(badge.format("sim-b-0000")).inner_text() == "not drifted"
    assert page.locator(badge.format("sim-a-0002")).inner_text() == "drifted (0.42)"
    for device in ("sim-a-0000", "sim-a-0001", "sim-b-0001"):
        assert page.locator(badge.format(device)).inner_text() == "no drift data"
        assert "nodata" in (page.get_attribute(badge.format(device), "class") or "")
    assert "stable" not in page.inner_text("#devices").lower()

    page.goto(fleet.base_url + "/static/device.html?id=sim-a-0001")
    page.wait_for_selector("#drift.nodata")
    assert page.inner_text("#drift") == "no drift data"
    page.goto(fleet.base_url + "/static/device.html?id=sim-b-0000")
    page.wait_for_selector("#drift.not-drifted")
    assert page.inner_text("#drift") == "not drifted"


def test_an_unknown_device_is_explained(page: Any, fleet: FleetStack) -> None:
    page.goto(fleet.base_url + "/static/device.html?id=no-such-device")
    page.wait_for_selector("#load-error:not([hidden])")
    assert 'No device "no-such-device"' in page.inner_text("#load-error")


def test_read_only_users_get_no_command_buttons(browser: Any, fleet: FleetStack) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        login(page, fleet.base_url, user="viewer", password=VIEWER_PASSWORD)
        page.goto(fleet.base_url + "/static/device.html?id=sim-a-0000")
        page.wait_for_selector("#chart-throughput svg[data-points]")
        assert page.locator("#commands-section").is_hidden()
        assert "viewer (read)" in page.inner_text("#who")
    finally:
        context.close()


def test_token_login_falls_back_to_polling(browser: Any, fleet: FleetStack) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(fleet.base_url + "/static/login.html")
        page.click("summary")
        page.fill("#token", ADMIN_TOKEN)
        page.click("#token-form button[type=submit]")
        page.wait_for_url("**/static/index.html")
        page.wait_for_selector("#live[data-mode=polling]")
        page.wait_for_function("() => document.querySelectorAll('#devices tbody tr').length === 5")
    finally:
        context.close()


def test_a_killed_device_goes_offline_without_a_reload(page: Any, browser: Any, fleet: FleetStack) -> None:
    # A second browser whose event stream is refused: it must fall back to polling and still see it.
    polling_context = browser.new_context()
    polling = polling_context.new_page()
    polling.route("**/api/stream", lambda route: route.abort())
    login(polling, fleet.base_url)
    polling.wait_for_selector("#live[data-mode=polling]")
    page.wait_for_selector("#live[data-mode=live]")
    for view in (page, polling):
        view.wait_for_function(
            "() => document.querySelectorAll('#devices tbody tr[data-online=true]').length === 5"
        )
        view.evaluate("window.__noReload = true")

    fleet.simulators["sim-b"].send_signal(signal.SIGKILL)
    fleet.simulators["sim-b"].wait()

    for view in (page, polling):
        view.wait_for_function(
            "() => document.querySelectorAll('#devices tbody tr[data-online=false]').length === 2"
        )
        view.wait_for_function("() => document.getElementById('count-offline').textContent === '2'")
        offline: list[str] = view.eval_on_selector_all(
            "#devices tbody tr[data-online=false]", "rows => rows.map(r => r.dataset.device)"
        )
        assert offline == ["sim-b-0000", "sim-b-0001"]
        assert view.locator("tr[data-device=sim-b-0000] .badge.status").inner_text() == "offline"
        assert view.evaluate("window.__noReload") is True
    polling_context.close()
    screenshot(page, "dashboard-overview-offline.png")


def test_device_page_shows_missing_results(page: Any, fleet: FleetStack) -> None:
    # Last in the module: it adds a device, and the tests above count the fleet's five.
    # Messages 1, 2 and 5 arrive; the device's status says it holds nothing below id 7: 3, 4 and 6
    # left the device without reaching the controller (gap detection, docs/cloud_sync.md).
    device = "gap-dev-1"
    fleet.publish_raw(device, [("telemetry", 1), ("telemetry", 2), ("telemetry", 5), ("status", 0)], floor=7)
    page.goto(fleet.base_url + "/static/device.html?id=sim-a-0001")
    page.wait_for_selector("#facts dt:text('Results missing') + dd:text('none')")
    page.goto(fleet.base_url + f"/static/device.html?id={device}")
    page.wait_for_selector("#facts dt:text('Results missing') + dd:has-text('3 messages: ids 3-4, 6')")
    detail = fleet.get(f"/api/devices/{device}")
    assert detail["delivery"]["missing"] == [[3, 4], [6, 6]]
