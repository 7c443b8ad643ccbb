"""`edgefleet demo` shows four live devices with real results in the dashboard (headless Chromium);
the first three replay held-out watch recordings with the cloud fallback (some answers come from the
controller's inference workers); the fourth replays an injected sensor fault and shows as drifted."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dashboard.conftest import edgefleet_command, screenshot, stop_process, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DASHBOARD_LINE = re.compile(r"dashboard: (http://\S+?)/?\s+\(login: (\S+) / (\S+)\)")
TOKEN_LINE = re.compile(r"API token: (\S+)")


class DemoOutput:
    """Reads the demo's stdout on a thread (so the pipe never fills) and keeps every line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    def close(self) -> None:
        """After the process ended: let the reader finish, then close the pipe (no leaked file)."""
        self._thread.join(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def find(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        assert self._process.poll() is None, "the demo exited early:\n" + "\n".join(self.lines)
        for line in list(self.lines):
            found = pattern.search(line)
            if found:
                return found
        return None


def test_demo_shows_four_live_devices_with_results_and_the_faulty_one_drifted(
    browser: Any, tmp_path: Path
) -> None:
    workdir = tmp_path / "demo"
    # Long enough for the campaigns too; the test stops the demo itself (SIGINT) when it is done.
    process = subprocess.Popen(
        edgefleet_command("demo", "--seconds", "600", "--http-port", "0", "--workdir", str(workdir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = DemoOutput(process)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        found = wait_for(lambda: output.find(DASHBOARD_LINE), timeout=60, what="the demo's dashboard URL")
        base_url, user, password = found.group(1).rstrip("/"), found.group(2), found.group(3)
        assert wait_for(lambda: output.find(TOKEN_LINE), what="the demo's API token").group(1)

        page.goto(base_url + "/")
        page.wait_for_url("**/static/login.html**")
        page.fill("#username", user)
        page.fill("#password", password)
        page.click("#password-form button[type=submit]")
        page.wait_for_url("**/static/index.html**")
        page.wait_for_function("() => document.getElementById('count-online').textContent === '4'")
        # Real results: every agent's replayed windows were classified and stored by the controller.
        page.wait_for_function(
            "() => [...document.querySelectorAll('#devices tbody tr[data-online=true] td[data-results]')]"
            ".filter(c => Number(c.dataset.results) > 0).length === 4",
            timeout=45_000,
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#devices td[data-throughput]')]"
            ".filter(c => Number(c.dataset.throughput) > 0).length === 4",
            timeout=30_000,
        )
        ids: list[str] = page.eval_on_selector_all(
            "#devices tbody tr", "rows => rows.map(r => r.dataset.device)"
        )
        assert ids == ["demo-01", "demo-02", "demo-03", "demo-04"]

        # demo-04's acc_y is offset by one std (edgefleet/demo_fault.py): its agent flags drift.
        def demo_04_drifted() -> bool:
            page.reload()
            page.wait_for_selector("#devices tbody tr[data-device='demo-04']")
            return page.query_selector("#devices tbody tr[data-device='demo-04'] .badge.drifted") is not None

        wait_for(demo_04_drifted, timeout=60, what="demo-04 shown as drifted")
        drifted = page.eval_on_selector_all(
            "#devices tbody tr .badge.drifted", "cells => cells.map(c => c.closest('tr').dataset.device)"
        )
        assert drifted == ["demo-04"]
        labels = page.eval_on_selector_all(
            "#devices tbody tr td:nth-child(8)", "cells => cells.map(c => c.textContent)"
        )
        assert all(label not in ("", "\N{EN DASH}") for label in labels), labels
        screenshot(page, "dashboard-demo-overview.png")

        page.click("a[href='/static/device.html?id=demo-02']")
        page.wait_for_selector("#device-title:text('demo-02')")
        page.wait_for_function(
            "() => Number(document.querySelector('#chart-throughput svg').dataset.points) > 1"
        )
        page.wait_for_function("() => Number(document.getElementById('results').dataset.total) > 0")
        screenshot(page, "dashboard-demo-device.png")

        good_then_bad_campaign(page)
    finally:
        context.close()
        stop_process(process, timeout=30)
        output.close()
    assert process.returncode == 0, "\n".join(output.lines[-30:])
    answered = {
        device: answered_by(workdir / device / "store.db") for device in ("demo-01", "demo-02", "demo-03")
    }
    for device, counts in answered.items():
        assert counts.get("cloud", 0) > 0, (device, counts)
        assert counts.get("edge", 0) > 0, (device, counts)
    assert set(answered_by(workdir / "demo-04" / "store.db")) == {"edge"}


OTA_DEVICES = ("demo-01", "demo-03")  # the devices running watch-edge-tflite, tagged ota-demo


def start_campaign(page: Any, version: str) -> str:
    """Fill the Campaigns page's form (tag ota-demo, stages 50,100); the new campaign's id."""
    page.click("nav >> text=Campaigns")
    page.wait_for_url("**/static/campaigns.html")
    page.wait_for_selector("#new-section:not([hidden])")
    page.wait_for_selector(f"#bundle option[value='watch-edge-tflite@{version}']", state="attached")
    page.select_option("#bundle", f"watch-edge-tflite@{version}")
    page.select_option("#target-kind", "tag")
    page.fill("#target", "ota-demo")
    page.fill("#stages", "50,100")
    page.click("#new-campaign button[type=submit]")
    page.wait_for_selector("#new-result:has-text('started')")
    started = re.search(r"campaign (\S+) started", page.inner_text("#new-result"))
    assert started, page.inner_text("#new-result")
    return started.group(1)


def devices_in(page: Any, row: str) -> dict[str, str]:
    """The campaign row's per-device lines, by device id."""
    items: list[tuple[str, str]] = page.eval_on_selector_all(
        f"{row} li[data-device]", "items => items.map(i => [i.dataset.device, i.textContent])"
    )
    return dict(items)


def good_then_bad_campaign(page: Any) -> None:
    # The page refreshes itself; generous caps: install, validation and probation (demo_ota.py).
    page.set_default_timeout(120_000)
    good = start_campaign(page, "1.1.0")
    row = f"#campaigns tbody tr[data-campaign='{good}']"
    page.wait_for_selector(f"{row} [data-status=completed]")
    lines = devices_in(page, row)
    assert sorted(lines) == list(OTA_DEVICES), lines
    assert all(" ok" in text for text in lines.values()), lines
    screenshot(page, "dashboard-demo-campaign-good.png")

    # The devices now run 1.1.0 (their status uplink, shown in the fleet table).
    page.click("nav >> text=Fleet")
    page.wait_for_url("**/static/index.html**")
    for device in OTA_DEVICES:
        page.wait_for_selector(f"#devices tbody tr[data-device='{device}'] td:nth-child(3):has-text('1.1.0')")

    bad = start_campaign(page, "1.2.0")
    row = f"#campaigns tbody tr[data-campaign='{bad}']"
    page.wait_for_selector(f"{row} [data-status=halted]")
    lines = devices_in(page, row)
    offered = [device for device, text in lines.items() if "pending" not in text]
    assert len(offered) == 1, lines  # stage 1 (50% of two devices): one device, then the halt
    (second,) = [device for device in lines if device not in offered]
    assert "pending" in lines[second], lines
    # Its probation failed it (the device put its previous model back); the line says why.
    assert page.query_selector(f"{row} li[data-device='{offered[0]}'] .badge.failed") is not None, lines
    assert "rolled_back" in lines[offered[0]], lines
    assert "mean confidence" in lines[offered[0]], lines  # the demo's bad version: std x20
    detail = page.inner_text(f"{row} td:nth-child(6)")
    assert "halted" in detail, detail
    screenshot(page, "dashboard-demo-campaign-bad.png")

    # The first device put its previous model back by itself: it runs 1.1.0 again, not 1.2.0.
    page.click("nav >> text=Fleet")
    page.wait_for_url("**/static/index.html**")
    first = f"#devices tbody tr[data-device='{offered[0]}'] td:nth-child(3)"
    page.wait_for_selector(f"{first}:has-text('1.1.0')")
    assert "1.2.0" not in page.inner_text(first)


def answered_by(db: Path) -> dict[str, int]:
    """Stored results per answering side, read from the agent's own store after the demo stopped."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT answered_by, count(*) FROM results GROUP BY answered_by").fetchall())
