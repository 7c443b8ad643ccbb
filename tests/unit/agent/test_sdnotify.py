"""sd_notify against a real datagram socket, both a path and the abstract namespace."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.sdnotify import Notifier

pytestmark = pytest.mark.unit


def _receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_sends_ready_status_watchdog_stopping(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("serving")
    assert _receive(sock) == {"READY": "1", "STATUS": "serving"}
    assert notifier.status("line one\nline two")
    assert _receive(sock) == {"STATUS": "line one line two"}
    assert notifier.watchdog()
    assert _receive(sock) == {"WATCHDOG": "1"}
    assert notifier.reloading()
    reloading = _receive(sock)
    assert reloading["RELOADING"] == "1"
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert notifier.stopping()
    assert _receive(sock) == {"STOPPING": "1"}
    notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"edgefleet-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert _receive(sock) == {"READY": "1"}
        notifier.close()
    finally:
        sock.close()


def test_noop_without_env() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert notifier.watchdog_interval() is None


def test_unreachable_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled
    assert not notifier.ready()
    notifier.close()


def test_watchdog_interval_is_half_of_usec(path_socket: tuple[str, socket.socket]) -> None:
    path, _ = path_socket
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}).watchdog_interval() == 2.0
    other_pid = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(other_pid).watchdog_interval() is None
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"}).watchdog_interval() is None


def test_unsupported_address_disables(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "neither a path" in caplog.text
