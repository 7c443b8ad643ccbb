"""Controller ingest benchmark: simulated devices -> local Mosquitto -> `edgefleet controller serve`.

Each simulated device publishes one telemetry message per second (8 metric samples) and one
results batch every ``--results-every`` seconds (one result per second of inference), all real
protocol messages (msgpack + zstd, QoS 1), stamped with ``sent_at`` just before publishing.
Devices are multiplexed over ``--publishers`` processes with ONE MQTT connection each (publishing
on the devices' own topics), because 1,000 paho clients would measure the load generator, not
the controller. The controller runs as a real ``edgefleet controller serve`` subprocess.

Figures per fleet size: offered messages/s (what the publishers managed to send), ingested
messages/s (stored by the controller, from its /api/ingest/stats), their ratio, publish->stored
lag p50/p99 (controller's commit time minus the publisher's sent_at, same clock), the controller's
CPU use, and whether it kept up (ingested >= 97% of offered, queue under a second of load,
p99 lag under 2 s). Then the fleet grows by --ramp-factor (1.5) until it no longer keeps up.

Baseline (same run): a counting MQTT subscriber (no decoding, no database) on the same load,
so ``ingested / baseline`` shows what decoding and storing cost against raw broker delivery.

    python bench/controller_ingest.py                 # 1000 devices, then ramp
    python bench/controller_ingest.py --devices 500 --no-ramp --database postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import make_envelope
from edgefleet.cloud_sync.topics import MessageKind

TOKEN = "bench-admin-token-0123456789abcdef"
METRICS = (
    "cpu_percent",
    "memory_rss_bytes",
    "temperature_c",
    "throughput_windows_per_s",
    "inference_latency_ms_p95",
    "buffer_fill_ratio",
    "store_size_bytes",
    "fallback_share",
)
LABELS = ("Standing", "Walking", "Running", "Badminton")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings true\npersistence false\nmax_queued_messages 1000000\n"
        f"max_inflight_messages 1000\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    return process, port


def start_controller(
    workdir: Path, broker_port: int, database: str, index: int = 0
) -> tuple[subprocess.Popen[bytes], str]:
    http_port = free_port()
    db_line = (
        f'url = "{database}"'
        if database.startswith("postgres")
        else f'sqlite_path = "{workdir}/controller.db"'
    )
    schema = f'schema_name = "bench_{os.getpid()}"' if database.startswith("postgres") else ""
    config = workdir / f"controller-{index}.toml"
    config.write_text(
        f"[mqtt]\nport = {broker_port}\n[database]\n{db_line}\n{schema}\n[http]\nport = {http_port}\n"
        "[ingest]\nbatch_max_messages = 2000\nbatch_max_delay_ms = 150\n[retention]\ninterval_s = 3600\n"
    )
    log_path = workdir / f"controller-{index}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefleet", "controller", "serve", "--quiet", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": TOKEN},
    )
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).json().get("mqtt_connected"):
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"controller exited: {log_path.read_text()}")
        time.sleep(0.2)
    raise RuntimeError("controller did not become healthy")


def stats(bases: list[str]) -> dict[str, Any]:
    """Ingest counters summed over the controllers; the worst lag of any."""
    total: dict[str, Any] = {
        "stored": 0,
        "received": 0,
        "queue_depth": 0,
        "lag_p50_ms": None,
        "lag_p99_ms": None,
    }
    for base in bases:
        response = httpx.get(
            base + "/api/ingest/stats", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        response.raise_for_status()
        one = response.json()
        for key in ("stored", "received", "queue_depth"):
            total[key] += one[key]
        for key in ("lag_p50_ms", "lag_p99_ms"):
            if one[key] is not None:
                total[key] = max(one[key], total[key] or 0.0)
    return total


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in processes))


# ------------------------------------------------------------------ load generator (child processes)


def publisher(
    broker_port: int,
    device_ids: list[str],
    start_at: float,
    duration: float,
    results_every: int,
    first_id: int,
    sent: Any,
    finished: Any,
) -> None:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}"
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker_port, keepalive=60)
    client.loop_start()
    message_ids = dict.fromkeys(device_ids, first_id)

    def publish(device_id: str, kind: MessageKind, body: dict[str, Any], message_id: int) -> None:
        envelope = make_envelope(device_id, kind, body, message_id=message_id)
        envelope = envelope.model_copy(update={"sent_at": time.time()})
        client.publish(
            f"edgefleet/v1/{device_id}/{kind}", encode_message(envelope), qos=1, retain=kind == "status"
        )

    for device_id in device_ids:
        publish(
            device_id, "status", {"state": "online", "agent_version": "0.1.0", "model_version": "1.0.0"}, 0
        )
    count = 0
    second = 0
    while time.time() < start_at:
        time.sleep(0.01)
    while second < duration:
        tick = start_at + second
        spacing = 1.0 / max(1, len(device_ids))
        for index, device_id in enumerate(device_ids):
            due = tick + index * spacing
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            message_ids[device_id] += 1
            samples = [
                {"ts": now, "name": name, "value": float(index % 97) + i} for i, name in enumerate(METRICS)
            ]
            publish(device_id, "telemetry", {"samples": samples}, message_ids[device_id])
            count += 1
            if (second + index) % results_every == 0:
                message_ids[device_id] += 1
                results = [
                    {
                        "stream": "imu",
                        "window_seq": second * 10 + k,
                        "window_start": now - results_every + k,
                        "window_end": now - results_every + k + 1,
                        "model_name": "basicmotions",
                        "model_version": "1.0.0",
                        "label": LABELS[(index + k) % len(LABELS)],
                        "score": 0.9,
                        "latency_ms": 4.0 + (index % 13),
                        "answered_by": "cloud" if (index + k) % 20 == 0 else "edge",
                    }
                    for k in range(results_every)
                ]
                publish(device_id, "results", {"results": results}, message_ids[device_id])
                count += 1
        second += 1
    with sent.get_lock():
        sent.value += count
    with finished.get_lock():
        finished.value = max(finished.value, time.time())
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()


class CountingSubscriber:
    """The baseline: receives the same uplink traffic, counts it, does nothing else."""

    def __init__(self, broker_port: int) -> None:
        self.count = 0
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker_port)
        for kind in ("telemetry", "results"):
            self.client.subscribe(f"$share/baseline/edgefleet/v1/+/{kind}", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_load(
    broker_port: int, devices: int, publishers: int, duration: float, results_every: int, run_index: int
) -> tuple[list[mp.Process], Any, float]:
    ids = [f"bench-{run_index}-{i:05d}" for i in range(devices)]
    sent = mp.Value("q", 0)
    finished = mp.Value("d", 0.0)
    start_at = time.time() + 2.0 + devices / 2000
    first_id = int(time.time() * 1000) * 1000
    processes = [
        mp.Process(
            target=publisher,
            args=(
                broker_port,
                ids[k::publishers],
                start_at,
                duration,
                results_every,
                first_id,
                sent,
                finished,
            ),
            daemon=True,
        )
        for k in range(publishers)
    ]
    for p in processes:
        p.start()
    return processes, (sent, finished), start_at


def measure(
    bases: list[str],
    baseline: CountingSubscriber | None,
    controllers: list[psutil.Process],
    args: argparse.Namespace,
    devices: int,
    run_index: int,
    broker_port: int,
) -> dict[str, Any]:
    processes, (sent, finished), start_at = run_load(
        broker_port, devices, args.publishers, args.duration, args.results_every, run_index
    )
    warmup = min(3.0, args.duration / 4)
    while time.time() < start_at + warmup:
        time.sleep(0.05)
    before = stats(bases) if bases else {"stored": baseline.count if baseline else 0, "received": 0}
    cpu_before = cpu_seconds(controllers)
    t0 = time.time()
    window_end = start_at + args.duration
    while time.time() < window_end:
        time.sleep(0.05)
    after = stats(bases) if bases else {"stored": baseline.count if baseline else 0, "received": 0}
    t1 = time.time()
    cpu_after = cpu_seconds(controllers)
    for p in processes:
        p.join(30)
    # Publishers that fall behind their schedule finish late: offered is what they really managed.
    offered = sent.value / max(args.duration, finished.value - start_at)
    ingested = (after["stored"] - before["stored"]) / (t1 - t0)
    received = (after["received"] - before["received"]) / (t1 - t0) if bases else ingested
    cpu = (cpu_after - cpu_before) / (t1 - t0) if controllers else None
    row = {
        "devices": devices,
        "offered": offered,
        "ingested": ingested,
        "received": received,
        "queue": after.get("queue_depth", 0),
        "p50": after.get("lag_p50_ms"),
        "p99": after.get("lag_p99_ms"),
        "cpu": cpu,
    }
    row["kept_up"] = bool(
        ingested >= 0.97 * received and row["queue"] < offered and (row["p99"] is None or row["p99"] < 2000)
    )
    # Let a backlog drain before the next phase.
    if bases:
        deadline = time.time() + 30
        while time.time() < deadline and stats(bases)["queue_depth"] > 0:
            time.sleep(0.2)
    return row


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--publishers", type=int, default=2, help="load-generator processes (one MQTT connection each)"
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per fleet size")
    parser.add_argument(
        "--results-every", type=int, default=5, help="a results batch every N seconds per device"
    )
    parser.add_argument("--database", default="sqlite", help="'sqlite' or a postgresql:// URL")
    parser.add_argument("--no-ramp", action="store_true", help="only the --devices fleet size")
    parser.add_argument(
        "--controllers", type=int, default=1, help="controller processes sharing the load (one share group)"
    )
    parser.add_argument("--max-devices", type=int, default=16000)
    parser.add_argument("--ramp-factor", type=float, default=1.5, help="fleet size growth per step")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="edgefleet-bench-"))
    broker, broker_port = start_mosquitto(workdir)
    print(
        f"controller ingest bench: {os.cpu_count()} CPUs, database {args.database.split('@')[-1]}, "
        f"{args.controllers} controller process(es), "
        f"{args.publishers} publisher processes x 1 MQTT connection, telemetry 1/s + results every "
        f"{args.results_every}s per device, {args.duration:.0f}s per size",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    try:
        baseline = CountingSubscriber(broker_port)
        base_row = measure([], baseline, [], args, args.devices, 0, broker_port)
        baseline.close()
        started = [start_controller(workdir, broker_port, args.database, i) for i in range(args.controllers)]
        bases = [base for _, base in started]
        procs = [psutil.Process(process.pid) for process, _ in started]
        devices = args.devices
        run_index = 1
        while True:
            row = measure(bases, None, procs, args, devices, run_index, broker_port)
            rows.append(row)
            share = row["ingested"] / max(row["received"], 1e-9)
            print(
                f"  {devices:>6} devices: offered {row['offered']:6.0f} msg/s, "
                f"received {row['received']:6.0f}, stored {row['ingested']:6.0f} msg/s "
                f"(x{share:.2f} of received), lag p50 {fmt(row['p50'])} ms p99 {fmt(row['p99'])} ms, "
                f"controller CPU {fmt(row['cpu'], '.2f')} cores, "
                f"{'kept up' if row['kept_up'] else 'FELL BEHIND'}",
                flush=True,
            )
            if args.no_ramp or not row["kept_up"] or devices * args.ramp_factor > args.max_devices:
                break
            devices = int(devices * args.ramp_factor)
            run_index += 1
        for process, _ in started:
            process.send_signal(signal.SIGTERM)
        for process, _ in started:
            process.wait(30)
        if args.database.startswith("postgres"):
            import psycopg

            with psycopg.connect(args.database, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS bench_{os.getpid()} CASCADE")
    finally:
        broker.terminate()
        broker.wait(10)

    first = rows[0]
    print()
    print(f"{'':34}{'baseline':>14}{'controller':>14}{'ratio':>8}")
    print(
        f"{'msgs/s at ' + str(args.devices) + ' devices':34}"
        f"{base_row['ingested']:>14.0f}{first['ingested']:>14.0f}"
        f"{first['ingested'] / max(base_row['ingested'], 1e-9):>8.2f}"
    )
    print(f"{'  (offered msgs/s)':34}{base_row['offered']:>14.0f}{first['offered']:>14.0f}")
    print(f"{'publish->stored lag p99 (ms)':34}{'-':>14}{fmt(first['p99']):>14}")
    sustained = [r["devices"] for r in rows if r["kept_up"]]
    print(
        f"largest fleet sustained: {max(sustained) if sustained else 0} devices "
        f"(tested {', '.join(str(r['devices']) for r in rows)})"
    )
    print("baseline = a counting MQTT subscriber (no decode, no database) on the same broker and load")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
