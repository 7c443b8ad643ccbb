"""Cloud inference round trip: device -> local Mosquitto -> `edgefleet controller infer` -> device.

    python bench/cloud_inference.py [--rate 100] [--seconds 5] [--flood 1500] [--keep-hard-examples] [--json]

Windows are real held-out watch windows (models/data/watch.npz); the workers serve the shipped
``watch-cloud`` bundle, each worker one ``edgefleet controller infer --workers 1`` process.

1. **Latency**: one MQTT 5 device publishes requests at ``--rate`` per second for ``--seconds``
   with two workers; p50/p95/p99 from publish to the answer's arrival. Baseline, same run: the same
   window through the bundle in this process (``preprocess`` + ``predict`` + ``interpret``), and an
   MQTT echo round trip through the same broker (a client that republishes what it receives).
2. **Throughput**: ``--flood`` requests published at once; answered per second with one worker
   process, then with two. Goal: two workers ~2x one (on a machine with cores to spare).
3. **CPU accounting** of each flood: CPU seconds (``/proc/<pid>/stat`` utime + stime) of the
   broker, each worker process and this process (the load generator: it encodes every request and
   decodes every answer), per request, and how busy the whole machine was (``/proc/stat``): the
   rest is other work on a shared machine. Two workers can only double the rate when the one
   worker was the bottleneck (near 100 % of a core) and the machine had a core to spare.

Workers keep no hard examples unless ``--keep-hard-examples`` (then each writes them to a SQLite
file in the temporary directory, as ``edgefleet controller infer`` does by default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from controller_ingest import start_mosquitto
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import InferRequestBody, InferResponseBody, make_envelope
from edgefleet.cloud_sync.topics import device_topic
from edgefleet.runtime.bundle import load_bundle

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "models" / "bundles" / "watch-cloud"
PREFIX = "edgefleet/v1"


def windows(n: int) -> np.ndarray[Any, Any]:
    with np.load(ROOT / "models" / "data" / "watch.npz") as d:
        samples, offsets, test = d["samples"], d["offsets"], d["test"]
    out = []
    for i in np.flatnonzero(test):
        rec = samples[offsets[i] : offsets[i + 1]]
        out += [rec[s : s + 100] for s in range(0, len(rec) - 100 + 1, 50)]
    return np.stack([out[k % len(out)] for k in range(n)]).astype(np.float32)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Device:
    def __init__(self, port: int, device_id: str) -> None:
        self.device_id = device_id
        self.sent: dict[str, float] = {}
        self.latency_ms: dict[str, float] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(device_topic(device_id, "infer/response", prefix=PREFIX), qos=1)
        ready.wait(10)
        self.topic = device_topic(device_id, "infer/request", prefix=PREFIX)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        body = decode_message(message.topic, bytes(message.payload), prefix=PREFIX).body
        if not isinstance(body, InferResponseBody) or body.error is not None:
            raise SystemExit(f"unexpected answer: {body}")
        with self.lock:
            self.latency_ms[body.request_id] = (now - self.sent[body.request_id]) * 1000

    def send(self, request_id: str, window: np.ndarray[Any, Any]) -> None:
        body = InferRequestBody(
            request_id=request_id,
            stream="imu",
            window_start=0.0,
            window_end=2.0,
            shape=list(window.shape),
            data=window.astype("<f4").tobytes(),
            fallback_reason="bench",
        )
        payload = encode_message(make_envelope(self.device_id, "infer/request", body))
        with self.lock:
            self.sent[request_id] = time.perf_counter()
        self.client.publish(self.topic, payload, qos=1)

    def answered(self) -> int:
        with self.lock:
            return len(self.latency_ms)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_workers(
    workdir: Path, port: int, processes: int, keep_hard_examples: bool = False
) -> list[subprocess.Popen[str]]:
    config = workdir / "controller.toml"
    config.write_text(
        f'[mqtt]\nport = {port}\n[database]\nsqlite_path = "{workdir}/controller.db"\n'
        f'[inference]\nbundle = "{BUNDLE}"\nmax_wait_ms = 2.0\n'
        f"keep_hard_examples = {'true' if keep_hard_examples else 'false'}\n"
    )
    procs = []
    for _ in range(processes):
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "controller", "infer", "--config", str(config), "--quiet"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "serving" not in line:
            raise SystemExit(f"worker did not start: {line}")
        procs.append(proc)
    return procs


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.communicate(timeout=60)


def wait_answers(device: Device, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while device.answered() < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {device.answered()} of {n} answers after {timeout:.0f}s")
        time.sleep(0.01)


def latency_run(workdir: Path, port: int, rate: float, seconds: float) -> dict[str, float]:
    procs = start_workers(workdir, port, 2)
    device = Device(port, "bench-latency")
    data = windows(int(rate * seconds))
    try:
        start = time.perf_counter()
        for i, window in enumerate(data):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            device.send(f"l-{i}", window)
        wait_answers(device, len(data))
    finally:
        device.close()
        stop_workers(procs)
    lat = list(device.latency_ms.values())
    return {"p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "p99_ms": pct(lat, 0.99), "requests": len(lat)}


def echo_baseline(port: int, n: int = 300) -> float:
    """p50 ms of an MQTT round trip through the same broker: publish, an echo client republishes."""
    got: dict[int, float] = {}
    sent: dict[int, float] = {}
    topic = f"bench/{uuid.uuid4().hex[:8]}"
    echo = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def bounce(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        client.publish(topic + "/back", message.payload, qos=1)

    echo.on_message = bounce
    echo.connect("127.0.0.1", port)
    echo.subscribe(topic + "/out", qos=1)
    echo.loop_start()
    dev = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    dev.on_message = lambda c, u, m: got.__setitem__(int(m.payload), time.perf_counter())
    dev.connect("127.0.0.1", port)
    dev.subscribe(topic + "/back", qos=1)
    dev.loop_start()
    time.sleep(0.5)
    for i in range(n):
        sent[i] = time.perf_counter()
        dev.publish(topic + "/out", str(i).encode(), qos=1)
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    for client in (echo, dev):
        client.disconnect()
        client.loop_stop()
    return pct([(got[i] - sent[i]) * 1000 for i in got], 0.5)


def model_baseline(n: int = 300) -> float:
    """p50 ms of one window through the bundle in this process (no broker)."""
    bundle = load_bundle(BUNDLE)
    data = windows(n)
    times = []
    with bundle.open_model(threads=1) as model:
        for window in data:
            t = time.perf_counter()
            bundle.interpret_batch(model.predict(bundle.preprocess(window[None])))
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def flood_run(
    workdir: Path, port: int, broker_pid: int, processes: int, n: int, keep_hard_examples: bool
) -> dict[str, Any]:
    """Requests answered per second, and the CPU each part spent on them."""
    procs = start_workers(workdir, port, processes, keep_hard_examples)
    device = Device(port, f"bench-flood-{processes}")
    data = windows(n)
    pids = {"broker": broker_pid, **{f"worker{i + 1}": p.pid for i, p in enumerate(procs)}}
    try:
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        cpu0["generator"] = cpu_seconds()
        machine0 = machine_busy_s()
        start = time.perf_counter()
        for i, window in enumerate(data):
            device.send(f"f-{i}", window)
        wait_answers(device, n)
        elapsed = time.perf_counter() - start
        machine1 = machine_busy_s()
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        cpu["generator"] = cpu_seconds() - cpu0["generator"]
    finally:
        device.close()
        stop_workers(procs)
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    cores = os.cpu_count() or 1
    ours = sum(cpu.values())
    return {
        "rps": n / elapsed,
        "elapsed_s": elapsed,
        "cpu_us_per_request": {k: v / n * 1e6 for k, v in cpu.items()},
        "core_share": {k: v / elapsed for k, v in cpu.items()},
        "machine_busy_cores": busy / total * cores if total else 0.0,
        "ours_cores": ours / elapsed,
        "others_cores": max(0.0, busy / total * cores - ours / elapsed) if total else 0.0,
        "cores": cores,
    }


def print_flood(name: str, run: dict[str, Any]) -> None:
    parts = ", ".join(
        f"{k} {run['cpu_us_per_request'][k]:.0f} us ({100 * run['core_share'][k]:.0f}% of a core)"
        for k in sorted(run["cpu_us_per_request"])
    )
    print(f"  {name}: {run['rps']:.0f} req/s; CPU per request: {parts}")
    print(
        f"    machine: {run['machine_busy_cores']:.2f} of {run['cores']} cores busy"
        f" ({run['ours_cores']:.2f} this benchmark, {run['others_cores']:.2f} other work)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flood", type=int, default=1500)
    parser.add_argument("--keep-hard-examples", action="store_true", help="workers store hard examples")
    parser.add_argument("--skip-latency", action="store_true", help="only the floods")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker, port = start_mosquitto(workdir)
        try:
            latency = {} if args.skip_latency else latency_run(workdir, port, args.rate, args.seconds)
            echo_ms = echo_baseline(port)
            model_ms = model_baseline()
            one = flood_run(workdir, port, broker.pid, 1, args.flood, args.keep_hard_examples)
            two = flood_run(workdir, port, broker.pid, 2, args.flood, args.keep_hard_examples)
        finally:
            broker.terminate()
            broker.wait(10)
    result = {
        "rate_rps": args.rate,
        **latency,
        "baseline_mqtt_echo_p50_ms": echo_ms,
        "baseline_model_p50_ms": model_ms,
        "one_worker_rps": one["rps"],
        "two_workers_rps": two["rps"],
        "two_over_one": two["rps"] / one["rps"],
        "one_worker": one,
        "two_workers": two,
        "keep_hard_examples": args.keep_hard_examples,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    base = echo_ms + model_ms
    if latency:
        print(f"round trip at {args.rate:.0f} req/s, 2 workers, {latency['requests']:.0f} requests:")
        p50, p95, p99 = latency["p50_ms"], latency["p95_ms"], latency["p99_ms"]
        print(f"  p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms")
        print(
            f"  baseline (same run): MQTT echo p50 {echo_ms:.2f} ms + bare model p50 {model_ms:.2f} ms = "
            f"{base:.2f} ms; p50 / baseline = {latency['p50_ms'] / base:.1f}x"
        )
    print(
        f"flood of {args.flood}: 1 worker {one['rps']:.0f} req/s, 2 workers {two['rps']:.0f} req/s"
        f" = {two['rps'] / one['rps']:.2f}x (hard examples {'kept' if args.keep_hard_examples else 'off'})"
    )
    print_flood("1 worker", one)
    print_flood("2 workers", two)
    return 0


if __name__ == "__main__":
    sys.exit(main())
