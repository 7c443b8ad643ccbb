"""A new user's first agent run: the --demo example runs as printed; missing parts are said once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.agent.agentproc import demo_bundle
from tests.support.broker import free_port

pytestmark = pytest.mark.e2e


def edgefleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgefleet", *args]


def stored_results(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the agent has not created the table yet


def run_until(argv: list[str], cwd: Path, done: object, timeout: float = 90) -> str:
    """Run ``argv`` until ``done()`` holds (or the timeout), stop it with SIGTERM, return its output."""
    log = cwd / "agent.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if done():  # type: ignore[operator]
                break
            time.sleep(0.2)
        assert process.poll() is None, log.read_text()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return log.read_text()


def test_the_demo_example_runs_as_printed_and_stores_results(tmp_path: Path) -> None:
    demo_bundle()
    printed = subprocess.run(
        edgefleet("config", "example", "--demo"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (tmp_path / "x.toml").write_text(printed)
    store = tmp_path / "edgefleet-demo.db"
    output = run_until(
        edgefleet("agent", "run", "--config", "x.toml"),
        tmp_path,
        lambda: stored_results(store) >= 3,
    )
    assert stored_results(store) >= 3, output
    assert "waiting for" not in output  # nothing is missing in the demo form
    listed = subprocess.run(
        edgefleet("results", "--config", "x.toml"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "basicmotions-edge-tflite" in listed.stdout


def test_the_agent_says_once_what_it_waits_for(tmp_path: Path) -> None:
    demo_bundle()
    printed = subprocess.run(
        edgefleet("config", "example", "--demo"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    broker_port = free_port()  # nothing listens there
    config = printed.replace("basicmotions-edge-tflite", "no-such-bundle").replace(
        "enabled = false ", f'enabled = true\nhost = "127.0.0.1"\nport = {broker_port}\n'
    )
    assert f"port = {broker_port}" in config
    (tmp_path / "x.toml").write_text(config)
    # Long enough for the bundle retry (every 5 s) to have run more than once.
    started = time.monotonic()
    output = run_until(
        edgefleet("agent", "run", "--config", "x.toml"),
        tmp_path,
        lambda: time.monotonic() - started > 12,
    )
    waits = [line for line in output.splitlines() if "waiting for" in line]
    assert len(waits) == 2, output
    assert "no-such-bundle (it does not exist)" in waits[0]
    assert f"the MQTT broker 127.0.0.1:{broker_port}" in waits[1]
    assert "sent once it answers" in waits[1]
