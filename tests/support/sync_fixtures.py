"""Brokers and a controller-side collector for the cloud_sync tests.

Brokers are :class:`tests.support.broker.MosquittoBroker` with TLS / ACL / password listener
settings; the ACL is the shipped ``deploy/mosquitto/acl.example``, so the tests prove it works.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgefleet.agent.store import ResultRecord, Store, StoreConfig
from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import Body, Envelope, ResultItem, ResultsBody
from edgefleet.errors import ProtocolError
from tests.support.broker import MosquittoBroker
from tests.support.tls import Pki

REPO_ROOT = Path(__file__).resolve().parents[2]
ACL_EXAMPLE = REPO_ROOT / "deploy" / "mosquitto" / "acl.example"


_BodyT = TypeVar("_BodyT", bound=Body)


def body_of(envelope: Envelope, body_type: type[_BodyT]) -> _BodyT:
    """The envelope's body as ``body_type``; fails the test if it carries another kind's body."""
    body = envelope.body
    if not isinstance(body, body_type):
        carried = type(body).__name__
        raise AssertionError(f"a {envelope.kind!r} message carried {carried}, not {body_type.__name__}")
    return body


def unique_device(prefix: str = "dev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ brokers


# Started as root, mosquitto drops to its own user, which cannot enter pytest's 0700 temporary
# directories (certificates, ACL, log). Staying root is harmless in tests and ignored otherwise.
_STAY_ROOT = ("user root",)


def tls_broker(
    workdir: Path, pki: Pki, *, mtls: bool = True, acl: bool = True, port: int | None = None
) -> MosquittoBroker:
    """A broker with a TLS listener. ``mtls``: client certificates required, CN = user name."""
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [f"cafile {pki.ca_cert}", f"certfile {pki.broker_cert}", f"keyfile {pki.broker_key}"]
    if mtls:
        lines += ["require_certificate true", "use_identity_as_username true"]
    else:
        lines += ["allow_anonymous true"]
    if acl:
        lines.append(f"acl_file {ACL_EXAMPLE}")
    return MosquittoBroker(workdir, port=port, listener_lines=lines, global_lines=_STAY_ROOT)


def password_broker(workdir: Path, users: dict[str, str], *, acl: bool = True) -> MosquittoBroker:
    """A plain-TCP broker with a password file (``mosquitto_passwd``) and the example ACL."""
    workdir.mkdir(parents=True, exist_ok=True)
    passwd = workdir / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for i, (user, password) in enumerate(users.items()):
        args = [tool, "-b", *(["-c"] if i == 0 else []), str(passwd), user, password]
        subprocess.run(args, check=True, capture_output=True)
    lines = ["allow_anonymous false", f"password_file {passwd}"]
    if acl:
        lines.append(f"acl_file {ACL_EXAMPLE}")
    return MosquittoBroker(workdir, listener_lines=lines, global_lines=_STAY_ROOT)


# ------------------------------------------------------------------ controller side


class Collector:
    """A controller-like subscriber: decodes, de-duplicates on (device, message id, part), records."""

    def __init__(
        self,
        broker: MosquittoBroker,
        filters: Iterable[str] = ("edgefleet/v1/#",),
        *,
        protocol: MQTTProtocolVersion = mqtt.MQTTv5,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        max_bytes: int = 1024 * 1024,
        clean: bool = True,
    ) -> None:
        self.envelopes: list[Envelope] = []
        self.duplicates = 0
        self.errors: list[ProtocolError] = []
        self.raw: list[tuple[str, bytes]] = []
        self._seen: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._max_bytes = max_bytes
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=clean if protocol != mqtt.MQTTv5 else None,
        )
        # paho annotates the delays as int, but they are plain seconds added to time.monotonic();
        # sub-second delays keep the broker-restart tests quick.
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = self._on_connect
        self.filters = list(filters)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("collector subscription not acknowledged")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        # Subscribe on every (re)connect: a restarted broker without persistence forgot us.
        client.subscribe([(f, 1) for f in self.filters])

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        with self._lock:
            self.raw.append((message.topic, payload))
        try:
            env = decode_message(message.topic, payload, max_bytes=self._max_bytes)
        except ProtocolError as exc:
            with self._lock:
                self.errors.append(exc)
            return
        with self._lock:
            if env.message_id:
                if env.dedup_key in self._seen:
                    self.duplicates += 1
                    return
                self._seen.add(env.dedup_key)
            self.envelopes.append(env)

    def of_kind(self, kind: str, device_id: str | None = None) -> list[Envelope]:
        with self._lock:
            return [
                e
                for e in self.envelopes
                if e.kind == kind and (device_id is None or e.device_id == device_id)
            ]

    def results(self, device_id: str | None = None) -> list[ResultItem]:
        rows: list[ResultItem] = []
        for env in sorted(self.of_kind("results", device_id), key=lambda e: (e.seq, e.part)):
            rows.extend(body_of(env, ResultsBody).results)
        return rows

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def send(self, envelope: Envelope, *, prefix: str = "edgefleet/v1") -> None:
        self.publish(f"{prefix}/{envelope.device_id}/{envelope.kind}", encode_message(envelope))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ device side


def open_store(path: Path) -> Store:
    return Store.open(path, StoreConfig(path=path, synchronous="NORMAL"))


def result_records(count: int, *, stream: str = "imu", start_seq: int = 0) -> list[ResultRecord]:
    return [
        ResultRecord(
            stream=stream,
            window_start=1_700_000_000.0 + (start_seq + i) * 0.5,
            window_end=1_700_000_001.0 + (start_seq + i) * 0.5,
            model_name="har",
            model_version="1.0.0",
            label=("walk", "run", "sit")[(start_seq + i) % 3],
            score=0.5 + ((start_seq + i) % 100) / 1000,
            outputs=None,
            latency_ms=1.0 + (start_seq + i) % 7,
            window_seq=start_seq + i,
        )
        for i in range(count)
    ]


def fill_results(store: Store, total: int, *, batch: int = 50, streams: tuple[str, ...] = ("imu",)) -> None:
    """``total`` results per stream, written ``batch`` per write_results call (one outbox row each)."""
    for stream in streams:
        for start in range(0, total, batch):
            store.write_results(result_records(min(batch, total - start), stream=stream, start_seq=start))


def assert_exactly_once_in_order(rows: list[ResultItem], streams: Iterable[str], total: int) -> None:
    for stream in streams:
        seqs = [r.window_seq for r in rows if r.stream == stream]
        assert seqs == list(range(total)), f"stream {stream}: {len(seqs)} rows, first gaps/dups near " + str(
            next((i for i, s in enumerate(seqs) if s != i), None)
        )
