"""The shipped secure broker configuration (deploy/mosquitto/edgefleet.conf + ACLs) on a real
Mosquitto, with real certificates from ``edgefleet device provision``, laid out the way Debian
runs it: a main mosquitto.conf that includes conf.d/, where the shipped file goes unchanged
except for paths and ports. Plus a small hand-driven MQTT 5 client for playing the attacker.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.cloud_sync.provision import (
    CA_CERT,
    create_ca,
    generate_key,
    issue_certificate,
    provision_device,
    write_key,
    write_pem,
)
from edgefleet.cloud_sync.revocation import CRL_FILE, write_crl
from tests.support.broker import find_mosquitto, free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "mosquitto"
SHIPPED_CONF = SHIPPED / "edgefleet.conf"
MOUNT_POINT = "devices/"  # the device listener's mount_point in the shipped config
DEVICE_PREFIX = "devices/edgefleet/v1"  # the controller's topic_prefix under the shipped config
SHARE_GROUP = "edgefleet-controller"
CONTROLLERS = {"controller-1": "ctl-one-password", "controller-2": "ctl-two-password"}

# Debian bookworm's /etc/mosquitto/mosquitto.conf (package mosquitto 2.0.11), paths moved.
DEBIAN_MAIN_CONF = """\
# Place your local configuration in /etc/mosquitto/conf.d/
pid_file {root}/run/mosquitto.pid
persistence true
persistence_location {root}/lib/
log_dest file {root}/log/mosquitto.log
include_dir {root}/conf.d
"""


def render_shipped_conf(
    text: str, *, certs: Path, device_port: int, controller_port: int, passwd: Path
) -> str:
    """The shipped file with its /etc paths and ports replaced; fails if one is not there."""
    replacements = {
        "listener 8883\n": f"listener {device_port} 127.0.0.1\n",
        "listener 8884\n": f"listener {controller_port} 127.0.0.1\n",
        "/etc/mosquitto/certs/": f"{certs}/",
        "/etc/mosquitto/edgefleet-devices.acl": str(SHIPPED / "devices.acl"),
        "/etc/mosquitto/edgefleet-controllers.acl": str(SHIPPED / "controllers.acl"),
        "/etc/mosquitto/edgefleet-controllers.passwd": str(passwd),
    }
    for old, new in replacements.items():
        assert old in text, f"the shipped broker config no longer contains {old!r}"
        text = text.replace(old, new)
    return text


class ShippedBroker:
    """Mosquitto running the shipped configuration; certificates in ``ca_dir`` (dev CA)."""

    def __init__(self, root: Path, controllers: dict[str, str]) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto not installed (make test installs it from Debian's packages)")
        self.binary = binary
        self.root = root
        self.ca_dir = root / "ca"
        self.controllers = dict(controllers)
        self.device_port, self.controller_port = free_port(), free_port()
        for sub in ("run", "lib", "log", "conf.d", "devices"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = create_ca("edgefleet security-test CA")
        write_key(ca_key, self.ca_dir / "ca.key")
        write_pem(ca_cert, self.ca_dir / CA_CERT)
        write_crl(ca_key, ca_cert, {}, self.ca_dir / CRL_FILE)
        broker_key = generate_key()
        write_key(broker_key, self.ca_dir / "broker.key")
        write_pem(
            issue_certificate(
                ca_key, ca_cert, broker_key.public_key(), "localhost", server_hosts=("localhost", "127.0.0.1")
            ),
            self.ca_dir / "broker.crt",
        )
        self.passwd = root / "controllers.passwd"
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for i, (user, password) in enumerate(self.controllers.items()):
            args = [tool, "-b", *(["-c"] if i == 0 else []), str(self.passwd), user, password]
            subprocess.run(args, check=True, capture_output=True)
        self.main_conf = root / "mosquitto.conf"
        main = DEBIAN_MAIN_CONF.format(root=root)
        if not any(line.startswith("user ") for line in main.splitlines()):
            main += "user root\n"  # stay the test's user: pytest's temp folders are 0700
        self.main_conf.write_text(main + "log_type all\n")
        (root / "conf.d" / "edgefleet.conf").write_text(
            render_shipped_conf(
                SHIPPED_CONF.read_text(),
                certs=self.ca_dir,
                device_port=self.device_port,
                controller_port=self.controller_port,
                passwd=self.passwd,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / CA_CERT

    def device(self, device_id: str) -> tuple[Path, Path]:
        """(cert, key) of a device provisioned the way users do it."""
        out = self.root / "devices" / device_id
        cert = out / f"{device_id}.crt"
        if not cert.exists():
            result = provision_device(device_id, out, ca_dir=self.ca_dir)
            assert result.cert == cert
        return cert, out / f"{device_id}.key"

    def log(self) -> str:
        path = self.root / "log" / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> ShippedBroker:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.main_conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_port(self.device_port, timeout=15)
            wait_for_port(self.controller_port, timeout=15)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"the shipped broker config did not start; log:\n{self.log()}") from None
        return self

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its certificates and CRL."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "Reloading config" not in self.log():
            time.sleep(0.05)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> ShippedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Client:
    """A hand-driven MQTT 5 client: records CONNACK, messages, PUBACK/SUBACK codes, disconnects."""

    def __init__(
        self, client_id: str, *, clean_start: bool = True, session_expiry_s: int = 0, unmount: bool = False
    ) -> None:
        self.unmount = unmount
        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, ReasonCode] = {}
        self.granted: dict[int, list[ReasonCode]] = {}
        self.connack: ReasonCode | None = None
        self.assigned_id: str | None = None
        self.disconnects: list[str] = []
        self.connected = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = lambda c, u, mid, rc, props: self.acks.__setitem__(mid, rc)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.granted.__setitem__(mid, list(codes))

    def _on_connect(
        self, client: object, userdata: object, flags: object, rc: ReasonCode, props: object
    ) -> None:
        self.connack = rc
        assigned = getattr(props, "AssignedClientIdentifier", None)
        self.assigned_id = str(assigned) if assigned else None
        if not rc.is_failure:
            self.connected.set()
        self.done.set()

    def _on_disconnect(
        self, client: object, userdata: object, flags: object, rc: ReasonCode, props: object
    ) -> None:
        self.disconnects.append(str(rc))

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        # Mosquitto 2.0.11 leaves the listener's mount point on outgoing topics (fixed in 2.0.12).
        topic = message.topic.removeprefix(MOUNT_POINT) if self.unmount else message.topic
        with self._lock:
            self.messages.append((topic, bytes(message.payload)))

    def with_certificate(self, ca: Path, cert: Path, key: Path) -> Client:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self.client.tls_set_context(context)
        return self

    def with_password(self, ca: Path, username: str, password: str) -> Client:
        self.client.tls_set_context(ssl.create_default_context(cafile=str(ca)))
        self.client.username_pw_set(username, password)
        return self

    def connect(self, port: int, *, timeout: float = 15.0) -> Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.reconnect_delay_set(60, 120)  # an attacker's client: no quick automatic retries
        try:
            self.client.connect("localhost", port, clean_start=self.clean_start, properties=props)
        except (ssl.SSLError, OSError) as exc:
            self.disconnects.append(f"connect failed: {exc}")
            self.done.set()
            return self
        self.client.loop_start()
        self.done.wait(timeout)
        return self

    def subscribe(self, topic: str, *, timeout: float = 10.0) -> list[ReasonCode]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        deadline = time.monotonic() + timeout
        while mid not in self.granted and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.granted[mid]

    def publish(self, topic: str, payload: bytes, *, timeout: float = 10.0) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + timeout
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.acks[info.mid]

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
