"""What `edgefleet demo` writes and says before starting anything: controller config, port notice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edgefleet.controller.config import load_controller_config
from edgefleet.demo import DemoFleet, DemoSettings, _port_or_free

pytestmark = pytest.mark.unit


def test_the_demo_controller_keeps_one_second_result_buckets(tmp_path: Path) -> None:
    fleet = DemoFleet(DemoSettings())
    fleet.broker_port, fleet.http_port = 1883, 8080
    path = tmp_path / "controller.toml"
    path.write_text(fleet.controller_config())
    config = load_controller_config(path)
    assert config.ingest.result_bucket_s == 1
    assert config.http.port == 8080


def test_a_taken_port_is_replaced_and_said() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fleet = DemoFleet(DemoSettings(http_port=port))
        fleet.http_port = _port_or_free(port)
    assert fleet.http_port != port
    assert fleet.port_notice() == (
        f"edgefleet demo: port {port} is in use, so the dashboard is on port {fleet.http_port} "
        "(choose one with --http-port)"
    )


def test_no_notice_when_the_port_was_free_or_any_port_was_asked() -> None:
    fleet = DemoFleet(DemoSettings(http_port=8080))
    fleet.http_port = 8080
    assert fleet.port_notice() is None
    fleet = DemoFleet(DemoSettings(http_port=0))
    fleet.http_port = 41234
    assert fleet.port_notice() is None
