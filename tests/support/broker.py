"""A real Mosquitto broker on a free loopback port, owned by one test or module.

Tests control its configuration (plain, TLS, ACL, passwords) and its life:
stop, kill -9, SIGSTOP/SIGCONT (network stall) and restart on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on 127.0.0.1:{port} within {timeout}s")


class MosquittoBroker:
    """One mosquitto process. ``listener_lines`` go inside its listener block."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        listener_lines: Sequence[str] = ("allow_anonymous true",),
        global_lines: Sequence[str] = (),
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto not installed (make test installs it from Debian's packages)")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.listener_lines = list(listener_lines)
        self.global_lines = list(global_lines)
        self.conf_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        lines = [
            "per_listener_settings true",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type subscribe",
            "max_queued_messages 100000",
            # Started as root, mosquitto drops to its own user and then cannot read pytest's
            # 0700 temp folders (config includes, certificates, its log); stay root there.
            *(
                ["user root"]
                if os.geteuid() == 0 and not any(line.startswith("user ") for line in self.global_lines)
                else []
            ),
            *self.global_lines,
            f"listener {self.port} 127.0.0.1",
            *self.listener_lines,
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self) -> MosquittoBroker:
        self.write_config()
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto failed to start; log:\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
