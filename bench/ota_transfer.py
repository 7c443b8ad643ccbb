"""OTA transfer of the demo bundle over a local Mosquitto: bytes on the wire per bundle byte and the
time from offer to downloaded, beside a raw publish of the same file, as ratios.

    python bench/ota_transfer.py [--rounds 5] [--chunk-bytes 65536 4096]

OTA: the controller's real ``OtaHost`` (real SQLite database, its own MQTT connection) offers the
bundle ``.tar`` to a device running the real store, ``SyncService`` and ``OtaClient``; the clock
runs from ``offer()`` to the moment the client hands the finished, sha256-checked archive to its
installer. Bytes on the wire: every MQTT PUBLISH packet of the exchange, both ways (offer, chunk
requests, chunks, ``ota/progress`` up to ``downloaded``), headers included, PUBACKs and TCP not
counted (the same for both sides).

Baseline, same run: one plain paho client publishes the whole file as a single QoS 1 message to
a subscriber on the same broker; its time runs from the publish to the subscriber holding the
bytes (no hashing, no disk, nothing resumable) and its wire bytes are that one PUBLISH.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgefleet.cloud_sync.protocol import OtaOfferBody  # noqa: E402
from edgefleet.cloud_sync.uplink import wire_bytes  # noqa: E402
from tests.support.broker import MosquittoBroker  # noqa: E402
from tests.support.ota import DEMO_DIR, OtaRig  # noqa: E402

DEMO_TAR = DEMO_DIR.parent / "basicmotions-edge-tflite-1.0.0.tar"


class HandOver:
    """The installer end of the bench: notes when the checked archive arrives, installs nothing."""

    def __init__(self) -> None:
        self.arrived = threading.Event()

    def install(self, archive: Path, offer: OtaOfferBody, report: Any) -> None:
        self.arrived.set()


def ota_round(broker: MosquittoBroker, work: Path, tar: Path, chunk_bytes: int) -> tuple[float, int]:
    """Seconds from offer to hand-over, and wire bytes of the whole exchange."""
    handover = HandOver()
    rig = OtaRig(broker, work, chunk_bytes=chunk_bytes, installer=handover, window=8)  # type: ignore[arg-type]
    wire = {"down": 0, "up": 0}
    host_publish, device_publish = rig.host.publish, rig.client.publish_live

    def counted_down(topic: str, payload: bytes) -> bool:
        wire["down"] += wire_bytes(topic, len(payload), v5=True)
        return host_publish(topic, payload)

    def counted_up(topic: str, payload: bytes) -> str | None:
        wire["up"] += wire_bytes(topic, len(payload), v5=True)
        return device_publish(topic, payload)

    rig.host.publish, rig.client.publish_live = counted_down, counted_up
    try:
        info = rig.host.register(tar)
        started = time.perf_counter()
        rig.host.offer(rig.device_id, info)
        if not handover.arrived.wait(60):
            raise RuntimeError("the bundle did not arrive within 60 s")
        elapsed = time.perf_counter() - started
        deadline = time.monotonic() + 5
        while rig.sync.state().backlog.get("ota/progress", 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the last progress publish leaves the outbox
        progress = rig.sync.state().bytes_sent_by_kind.get("ota/progress", 0)
        return elapsed, wire["down"] + wire["up"] + progress
    finally:
        rig.close()


def raw_round(broker: MosquittoBroker, tar: Path) -> tuple[float, int]:
    data = tar.read_bytes()
    topic = "bench/raw/bundle"
    got = threading.Event()
    subscribed = threading.Event()
    receiver = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    receiver.on_message = lambda c, u, m: got.set() if len(m.payload) == len(data) else None
    receiver.on_subscribe = lambda *a: subscribed.set()
    receiver.connect(broker.host, broker.port)
    receiver.loop_start()
    receiver.subscribe(topic, qos=1)
    sender = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    try:
        if not subscribed.wait(10):
            raise RuntimeError("the raw receiver did not subscribe")
        started = time.perf_counter()
        sender.publish(topic, data, qos=1)
        if not got.wait(30):
            raise RuntimeError("the raw publish did not arrive")
        return time.perf_counter() - started, wire_bytes(topic, len(data), v5=True)
    finally:
        for client in (sender, receiver):
            client.loop_stop()
            client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk-bytes", type=int, nargs="+", default=[65536, 4096])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ota-bench-") as tmp:
        root = Path(tmp)
        broker = MosquittoBroker(root).start()
        try:
            tar = DEMO_TAR  # offered to a device serving 1.0.0: the same version is not a downgrade
            size = tar.stat().st_size
            print(f"bundle: {DEMO_TAR.name}, {size:,} bytes; {args.rounds} rounds, medians")
            raw = [raw_round(broker, tar) for _ in range(args.rounds)]
            raw_s = statistics.median(r[0] for r in raw)
            raw_wire = raw[0][1]
            print(f"{'raw publish (baseline)':<34}{raw_s * 1000:>9.1f} ms {raw_wire / size:>8.3f} wire B/B")
            for chunk in args.chunk_bytes:
                runs = [ota_round(broker, root / f"c{chunk}-r{i}", tar, chunk) for i in range(args.rounds)]
                ota_s = statistics.median(r[0] for r in runs)
                ota_wire = statistics.median(r[1] for r in runs)
                chunks = -(-size // chunk)
                print(
                    f"{f'OTA, {chunk // 1024} KiB chunks ({chunks})':<34}{ota_s * 1000:>9.1f} ms"
                    f" {ota_wire / size:>8.3f} wire B/B | time {ota_s / raw_s:.1f}x raw,"
                    f" wire {ota_wire / raw_wire:.3f}x raw"
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
