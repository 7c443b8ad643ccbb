"""`/docs` and `/redoc` render in headless Chromium with every non-local request blocked.

Factory fleets are often air-gapped: the API docs must not need a CDN.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.dashboard.conftest import edgefleet_command, stop_process, wait_for, write_controller_config
from tests.support.broker import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def controller_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `edgefleet controller serve`; no broker is needed to serve the docs."""
    workdir = tmp_path_factory.mktemp("docs-offline")
    http_port = free_port()
    config = write_controller_config(workdir, free_port(), http_port)
    log_path = workdir / "controller.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            edgefleet_command("controller", "serve", "--config", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{http_port}"
    try:

        def serving() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(serving, timeout=60, what="the controller's /healthz")
        yield base
    finally:
        stop_process(process)


def _offline_page(browser: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context()
    page = context.new_page()
    blocked: list[str] = []

    def only_local(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_local)
    return context, page, blocked


def test_swagger_ui_renders_without_network(browser: Any, controller_url: str, tmp_path: Path) -> None:
    context, page, blocked = _offline_page(browser)
    try:
        page.goto(controller_url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "edgefleet controller" in page.inner_text(".swagger-ui .info .title")
        # The operations are drawn from /openapi.json: the UI did not just show its frame.
        page.wait_for_selector(".opblock-summary-path[data-path='/api/devices']", timeout=30_000)
        assert page.locator(".opblock").count() > 10
        assert blocked == [], f"the docs page asked the internet for {blocked}"
    finally:
        context.close()


def test_redoc_renders_without_network(browser: Any, controller_url: str) -> None:
    context, page, blocked = _offline_page(browser)
    try:
        page.goto(controller_url + "/redoc")
        page.wait_for_selector("h1 >> text=edgefleet controller", timeout=30_000)
        page.get_by_text("/api/devices", exact=True).first.wait_for(timeout=30_000)
        # ReDoc's own "powered by" footer logo is the one remote image; the page works without it.
        assert [url for url in blocked if not url.endswith("/logo-mini.svg")] == [], blocked
    finally:
        context.close()


def test_docs_assets_come_from_the_controller(controller_url: str) -> None:
    html = httpx.get(controller_url + "/docs", timeout=10).text
    assert "cdn.jsdelivr.net" not in html
    assert "/docs-assets/swagger-ui-bundle.js" in html
    script = httpx.get(controller_url + "/docs-assets/swagger-ui-bundle.js", timeout=10)
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.text[:2000]
