"""`controller serve` for a new user: a way in on first start, `--password-stdin`, timestamped logs."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.dashboard.conftest import stop_process, wait_for, write_controller_config
from tests.support.broker import MosquittoBroker, free_port

pytestmark = pytest.mark.e2e


def edgefleet(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_CONTROLLER_ADMIN")}
    return subprocess.run(
        [sys.executable, "-m", "edgefleet", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def serve_once(config: Path, port: int, workdir: Path, ready: str = "") -> str:
    """Start `controller serve`, wait until it answers (and logs ``ready``), stop it; return its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_CONTROLLER_ADMIN")}
    out, err = workdir / "serve.out", workdir / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "controller", "serve", "--config", str(config)],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
    try:

        def serving() -> bool:
            assert process.poll() is None, err.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(serving, timeout=60, what="the controller's /healthz")
        wait_for(lambda: ready in err.read_text(), timeout=60, what=f"{ready!r} in the controller's log")
    finally:
        stop_process(process)
    return out.read_text()


def login(port: int, username: str, password: str) -> int:
    try:
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/login",
            json={"username": username, "password": password},
            timeout=10,
        )
    except httpx.ConnectError:
        return 0  # not listening yet
    return response.status_code


def test_first_start_creates_an_admin_and_shows_its_password_once(tmp_path: Path) -> None:
    port = free_port()
    config = write_controller_config(tmp_path, free_port(), port)
    first = serve_once(config, port, tmp_path)
    assert "no login existed" in first
    password = next(line.split()[-1] for line in first.splitlines() if "password:" in line)
    assert len(password) >= 16
    # Stored as a hash only: the clear password is nowhere in the database file.
    database = next(tmp_path.rglob("*.db"))
    with sqlite3.connect(database) as db:
        stored = db.execute("SELECT password_hash FROM users WHERE username = 'admin'").fetchone()[0]
    assert password not in stored
    assert password.encode() not in database.read_bytes()
    # The second start prints nothing new; the generated login works.
    process_output = serve_once(config, port, tmp_path)
    assert "password" not in process_output
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_CONTROLLER_ADMIN")}
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefleet", "controller", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for(lambda: login(port, "admin", password) == 200, timeout=60, what="the generated login")
        assert login(port, "admin", "wrong-password-123") == 401
    finally:
        stop_process(process)


def test_user_create_reads_the_password_from_stdin(tmp_path: Path) -> None:
    port = free_port()
    config = write_controller_config(tmp_path, free_port(), port)
    created = edgefleet(
        "controller",
        "user",
        "create",
        "ops",
        "--role",
        "admin",
        "--password-stdin",
        "--config",
        str(config),
        stdin="piped-password-123\n",
    )
    assert created.returncode == 0, created.stderr
    # An existing login means no generated admin.
    assert "no login existed" not in serve_once(config, port, tmp_path)
    database = next(tmp_path.rglob("*.db"))
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT username, role FROM users").fetchall() == [("ops", "admin")]
    empty = edgefleet(
        "controller", "user", "create", "ops", "--password-stdin", "--config", str(config), stdin=""
    )
    assert empty.returncode == 1
    assert "stdin held no password" in empty.stderr
    assert "Traceback" not in empty.stderr


def test_serve_log_lines_carry_utc_timestamps(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    port = free_port()
    config = write_controller_config(tmp_path, mosquitto.port, port)
    serve_once(config, port, tmp_path, ready="connected to")
    log_lines = [line for line in (tmp_path / "serve.err").read_text().splitlines() if " INFO " in line]
    assert log_lines, (tmp_path / "serve.err").read_text()
    for line in log_lines:
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO edgefleet\.", line), line
