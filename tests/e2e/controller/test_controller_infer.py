"""Cloud inference as real processes: `edgefleet controller infer` on its own, and `controller serve`
with ``[inference] enabled``, both answering a device over a real Mosquitto."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.controller.conftest import wait_for
from tests.integration.controller.inference.test_inference_worker import (
    CLOUD_BUNDLE,
    Device,
    cloud_answers,
    held_out_windows,
)
from tests.support.broker import MosquittoBroker, free_port

pytestmark = pytest.mark.e2e


def write_config(path: Path, broker: MosquittoBroker, *, enabled: bool) -> None:
    path.write_text(
        f"[mqtt]\nport = {broker.port}\n[http]\nport = {free_port()}\n"
        f'[database]\nsqlite_path = "controller.db"\n'
        f'[inference]\nenabled = {"true" if enabled else "false"}\nbundle = "{CLOUD_BUNDLE}"\nworkers = 2\n'
    )


def ask(broker: MosquittoBroker, device_id: str, n: int) -> None:
    windows = held_out_windows(n)
    labels, _ = cloud_answers(windows)
    device = Device(broker, device_id)
    try:
        for i, window in enumerate(windows):
            device.request(f"{device_id}-{i}", window)
        wait_for(lambda: len(device.answers()) == n, timeout=60, what=f"{n} answers")
        got = {b.request_id: b.label for b, _ in device.answers()}
        assert got == {f"{device_id}-{i}": labels[i] for i in range(n)}
    finally:
        device.close()


def test_infer_command_answers_requests_and_reports_on_sigterm(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    config = tmp_path / "controller.toml"
    write_config(config, mosquitto, enabled=False)  # `infer` serves the bundle whether or not enabled
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefleet", "controller", "infer", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = ""
        while "serving" not in line:  # after the workers' own log lines
            line = process.stderr.readline()
            assert line, f"infer exited: {process.wait(30)}"
        assert "2 worker(s) serving watch-cloud@1.0.0" in line, line
        ask(mosquitto, "e2e-watch", 5)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "answered 5 of 5 requests" in err


def test_infer_without_a_bundle_says_what_to_set(tmp_path: Path) -> None:
    config = tmp_path / "controller.toml"
    config.write_text("[mqtt]\nport = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet", "controller", "infer", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "no cloud bundle to serve" in done.stderr
    assert "inference.bundle" in done.stderr


def test_serve_with_inference_enabled_starts_the_workers(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    config = tmp_path / "controller.toml"
    write_config(config, mosquitto, enabled=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefleet", "controller", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert process.stderr is not None
        subscribed: list[str] = []
        while len(subscribed) < 2:  # requests sent before a worker subscribes are not kept
            line = process.stderr.readline()
            assert line, f"controller exited: {process.wait(30)}"
            if "inference worker" in line and "subscribed" in line:
                subscribed.append(line)
        ask(mosquitto, "e2e-served", 3)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
