"""``edgefleet demo``: the whole system on one machine.

A broker (Mosquitto when installed, else the embedded pure-Python amqtt broker speaking
MQTT 3.1.1), the controller with its dashboard and its cloud inference workers (the
``watch-cloud`` bundle), and four real agents: three replay the held-out smartwatch
exercise recordings through the shipped watch edge models with the cloud fallback on
(edgefleet/demo_watch.py), the fourth replays the BasicMotions test recording with an
injected sensor fault, so its drift alert shows in the dashboard. Every part is a real
``edgefleet`` process; the demo only writes their configs, starts them and prints a live
summary read from the controller's API. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edgefleet.cli.extras import require_extra
from edgefleet.demo_fault import FAULTY_DEVICE_INDEX, faulty_device_toml
from edgefleet.demo_ota import OTA_TAG, DemoOta, prepare_demo_ota
from edgefleet.demo_ota import SOURCE as OTA_SOURCE
from edgefleet.demo_watch import CLOUD_BUNDLE, EDGE_BUNDLES, watch_device_toml
from edgefleet.errors import EdgefleetError

__all__ = ["DemoFleet", "DemoSettings", "find_models_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent
FAULTY_BUNDLE = "basicmotions-edge-tflite"
REPLAY_SPEEDS = (2.0, 3.0, 5.0)


def find_models_dir() -> Path:
    """The shipped models: ``$EDGEFLEET_MODELS_DIR``, a checkout's ``models/``, or the image's copy."""
    candidates = [
        Path(os.environ["EDGEFLEET_MODELS_DIR"]) if os.environ.get("EDGEFLEET_MODELS_DIR") else None,
        REPO_ROOT / "models",
        Path("/opt/edgefleet/models"),
    ]
    for candidate in candidates:
        if candidate and (candidate / "bundles").is_dir():
            return candidate
    raise EdgefleetError(
        "cannot find the shipped demo models (models/bundles)",
        hint="they come with a checkout of edgefleet (its models/ folder), not with `pip install`: run "
        "from a checkout, or set EDGEFLEET_MODELS_DIR to a copy of that models/ folder",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_or_free(preferred: int) -> int:
    """``preferred`` when nothing listens there, else any free port (the demo must not fail on 8080)."""
    if preferred:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", preferred))
            except OSError:
                return _free_port()
            return preferred
    return _free_port()


def _wait_for_port(
    port: int, timeout: float, what: str, log: Path, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EdgefleetError(f"{what} exited with status {process.returncode} before listening:\n{tail}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise EdgefleetError(f"{what} did not start listening on port {port} within {timeout:.0f}s:\n{tail}")


@dataclass
class DemoSettings:
    devices: int = 4  # the fourth replays an injected sensor fault (edgefleet/demo_fault.py)
    http_port: int = 8080
    workdir: Path | None = None
    seconds: float | None = None
    summary_interval_s: float = 2.0
    broker: str = "auto"  # auto | mosquitto | amqtt


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class DemoFleet:
    """Starts, watches and stops the demo's processes."""

    settings: DemoSettings
    out: TextIO = field(default_factory=lambda: sys.stdout)
    children: list[_Child] = field(default_factory=list)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    protocol: str = "mqtt5"
    broker_port: int = 0
    http_port: int = 0
    workdir: Path = Path()
    ota: DemoOta | None = None  # signed bundles and versions for the campaigns page (demo_ota.py)
    _stop: threading.Event = field(default_factory=threading.Event)

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> _Child:
        log = self.workdir / f"{name}.log"
        handle = log.open("wb")
        process = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children in order
        )
        handle.close()
        child = _Child(name, process, log)
        self.children.append(child)
        return child

    def _start_broker(self) -> None:
        self.broker_port = _free_port()
        mosquitto = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
        )
        choice = self.settings.broker
        if choice == "mosquitto" and mosquitto is None:
            raise EdgefleetError(
                "--broker mosquitto asked for, but mosquitto is not installed",
                hint="apt-get install mosquitto, or use --broker amqtt",
            )
        if mosquitto and choice in {"auto", "mosquitto"}:
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 100000\n"
            )
            child = self._spawn("broker", [mosquitto, "-c", str(conf)])
            self.protocol = "mqtt5"
        else:
            require_extra("demo", "`edgefleet demo` without Mosquitto (its embedded amqtt broker)")
            conf = self.workdir / "amqtt.yaml"
            conf.write_text(
                "listeners:\n  default:\n    type: tcp\n"
                f"    bind: 127.0.0.1:{self.broker_port}\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
            )
            amqtt = str(Path(sys.executable).parent / "amqtt")
            child = self._spawn("broker", [amqtt, "-c", str(conf)])
            # amqtt speaks MQTT 3.1.1 only: everyone falls back to it.
            self.protocol = "mqtt311"
        _wait_for_port(self.broker_port, 15, "the broker", child.log, child.process)

    def _start_controller(self) -> None:
        self.http_port = _port_or_free(self.settings.http_port)
        config = self.workdir / "controller.toml"
        config.write_text(self.controller_config())
        env = {
            "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": self.token,
            "EDGEFLEET_CONTROLLER_ADMIN_PASSWORD": self.password,
        }
        child = self._spawn(
            "controller",
            [sys.executable, "-m", "edgefleet", "controller", "serve", "--config", str(config)],
            env,
        )
        _wait_for_port(self.http_port, 60, "the controller", child.log, child.process)

    def port_notice(self) -> str | None:
        """What to say when the asked-for dashboard port was taken and another one is used."""
        wanted = self.settings.http_port
        if not wanted or self.http_port == wanted:
            return None
        return (
            f"edgefleet demo: port {wanted} is in use, so the dashboard is on port {self.http_port} "
            "(choose one with --http-port)"
        )

    def controller_config(self) -> str:
        # One-second result buckets: "in the last minute" sums the 60 buckets before now, a sliding
        # minute, instead of the current 60-s bucket that restarts from zero at every minute.
        return (
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker_port}\nprotocol = "{self.protocol}"\n\n'
            f'[database]\nsqlite_path = "controller.db"\n\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.http_port}\nstream_interval_s = 1.0\n\n'
            "[ingest]\nresult_bucket_s = 1\n\n"
            # The shipped bundles' reference profiles score the dashboard's fleet drift panel.
            f'[drift]\nreference_bundles = ["{find_models_dir() / "bundles"}"]\n\n'
            # The fallback devices' unsure windows are answered here, by the larger watch model.
            f'[inference]\nenabled = true\nbundle = "{find_models_dir() / "bundles" / CLOUD_BUNDLE}"\n'
        )

    @staticmethod
    def bundle_name(index: int) -> str:
        """The shipped bundle device ``index`` loads: the faulty device's BasicMotions, else a watch one."""
        return FAULTY_BUNDLE if index == FAULTY_DEVICE_INDEX else EDGE_BUNDLES[index % len(EDGE_BUNDLES)]

    def agent_config(self, index: int, models: Path) -> str:
        device_id = f"demo-{index + 1:02d}"
        speed = REPLAY_SPEEDS[index % len(REPLAY_SPEEDS)]
        state = self.workdir / device_id
        drift = ""
        if index == FAULTY_DEVICE_INDEX:
            bundle = models / "bundles" / FAULTY_BUNDLE
            source, drift = faulty_device_toml(models, self.workdir, max(REPLAY_SPEEDS))
        else:
            bundle, source = watch_device_toml(models, self.workdir, index, speed, device_id)
        tags = ["demo"]
        if bundle.name == OTA_SOURCE:
            tags.append(OTA_TAG)  # the natural target of a campaign of that model's new versions
        if self.ota is not None:
            bundle = self.ota.signed[bundle.name]  # signed copies: the agents trust only the demo key
        return f"""\
[device]
id = "{device_id}"
name = "Demo device {index + 1}"
tags = {json.dumps(tags)}
state_dir = "{state}"

{source}
[model]
bundle = "{bundle}"

[batching]
max_batch_size = 8
batch_timeout_s = 0.2

[store]
path = "{state / "store.db"}"

[sync]
enabled = true
host = "127.0.0.1"
port = {self.broker_port}
protocol = "{self.protocol}"
status_interval_s = 5.0

[health]
metrics_interval_s = 2.0

[logging]
level = "warning"
{drift}{self.ota.agent_toml() if self.ota is not None else ""}"""

    def _start_agents(self) -> None:
        models = find_models_dir()
        for index in range(self.settings.devices):
            config = self.workdir / f"agent-{index + 1:02d}.toml"
            config.write_text(self.agent_config(index, models))
            self._spawn(
                f"agent-{index + 1:02d}",
                [sys.executable, "-m", "edgefleet", "agent", "run", "--config", str(config)],
            )

    # ------------------------------------------------------------------ API

    def api(self, path: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def local_store_facts(self, device_id: str) -> str:
        """What the agent's own SQLite store holds: every result lands there before any sync."""
        path = self.workdir / device_id / "store.db"
        if not path.exists():
            return "store: -"
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
                count, cloud, last = db.execute(
                    "SELECT count(*), coalesce(sum(answered_by = 'cloud'), 0),"
                    " (SELECT label FROM results ORDER BY id DESC LIMIT 1) FROM results"
                ).fetchone()
        except sqlite3.Error as exc:
            return f"store: ({exc})"
        return f"store: {count} results ({cloud} by the cloud), latest {last or '-'}"

    def summary_lines(self) -> list[str]:
        devices = self.api("/api/devices?sort=device_id")["devices"]
        lines = []
        for device in devices:
            device_id = device["device_id"]
            results = self.api(f"/api/devices/{device_id}/results/summary?since=-60")
            labels = sorted(results["labels"], key=lambda item: -item["count"])
            top = f"{labels[0]['label']} ({labels[0]['count']})" if labels else "-"
            state = "online " if device["online"] else "OFFLINE"
            model = f"{device.get('model_name') or '-'} {device.get('model_version') or ''}"
            lines.append(
                f"  {device_id:<8} {state} {model}"
                f" | {self.local_store_facts(device_id)} | controller: {results['total']} in the last"
                f" minute, top {top}"
            )
        return lines

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.workdir = self.settings.workdir or Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        loaded = {self.bundle_name(i) for i in range(self.settings.devices)}
        self.ota = prepare_demo_ota(self.workdir, find_models_dir(), loaded)
        self._start_broker()
        self._start_controller()
        versions = self.ota.register(self.http_port, self.token)
        self._start_agents()
        broker = "Mosquitto" if self.protocol == "mqtt5" else "amqtt (MQTT 3.1.1)"
        notice = self.port_notice()
        if notice:
            print(notice, file=self.out, flush=True)
        print(
            f"edgefleet demo: broker {broker} on 127.0.0.1:{self.broker_port}, "
            f"{self.settings.devices} agents (held-out watch recordings with cloud fallback; "
            f"demo-{FAULTY_DEVICE_INDEX + 1:02d}: BasicMotions with a sensor fault)\n"
            f"  dashboard: http://127.0.0.1:{self.http_port}/   (login: admin / {self.password})\n"
            f"  API token: {self.token}\n  logs and stores: {self.workdir}\n"
            f"  OTA: on the Campaigns page, push {versions[0]} to tag {OTA_TAG} (stages 50,100), then"
            f" {versions[1]} (deliberately bad: halted, rolled back by the device)\n"
            "  Ctrl-C stops everything.",
            file=self.out,
            flush=True,
        )

    def watch(self, sleep: Callable[[float], bool] | None = None) -> None:
        """Print the live summary until stopped, the time is up, or a child dies."""
        wait = sleep or self._stop.wait
        deadline = None if self.settings.seconds is None else time.monotonic() + self.settings.seconds
        while deadline is None or time.monotonic() < deadline:
            for child in self.children:
                if child.process.poll() is not None:
                    tail = child.log.read_text(errors="replace")[-1500:]
                    raise EdgefleetError(
                        f"{child.name} exited with status {child.process.returncode}:\n{tail}"
                    )
            try:
                lines = self.summary_lines()
            except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
                lines = [f"  (controller not answering yet: {exc})"]
            print(time.strftime("%H:%M:%S") + f" fleet ({len(lines)} devices)", file=self.out)
            print("\n".join(lines), file=self.out, flush=True)
            if wait(self.settings.summary_interval_s):
                break

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        # Agents first so their last results reach the broker, the broker last.
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
