"""Dashboard overview with 1,000 devices: server time to first byte and page weight.

Writes a fleet (status, telemetry history, results, drift) through the controller's data-access
layer into a SQLite file, starts Mosquitto and a real ``edgefleet controller serve`` on it, then
measures over plain HTTP/1.1 keep-alive connections:

* time to first byte (median and p95 of ``--repeats`` requests) of the overview JSON the page
  loads, beside same-run baselines: ``/healthz`` (the floor of the HTTP stack) and the raw
  ``/api/devices`` list of the same page size (registry rows only, no figures), as ratios;
* the naive alternative the overview endpoint replaces: one ``/api/devices/{id}`` per table row;
* page weight: HTML + CSS + JS + overview JSON of the first page, raw and gzip-compressed, beside
  the raw ``/api/devices`` JSON.

    python bench/dashboard_overview.py [--devices 1000] [--history-s 1800] [--interval-s 10]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgefleet.controller.config import DatabaseConfig
from edgefleet.controller.dal import open_database
from edgefleet.controller.dal.sql_overview import TOTALS_TTL_S
from edgefleet.controller.records import DriftItem, IngestMessage, StatusUpdate, StoredResult, TelemetryItem

TOKEN = "bench-dashboard-token-0123456789abcdef"
PAGE = 100
# Telemetry names and plausible ranges (uniform), as agents report them.
METRICS: dict[str, tuple[float, float]] = {
    "throughput_windows_per_s": (1.0, 20.0),
    "inference_latency_ms_p50": (1.0, 10.0),
    "inference_latency_ms_p95": (2.0, 20.0),
    "inference_latency_ms_p99": (3.0, 40.0),
    "cpu_percent": (5.0, 90.0),
    "memory_rss_bytes": (60e6, 120e6),
    "temperature_c": (40.0, 75.0),
    "fallback_share": (0.0, 0.2),
    "store_size_bytes": (1e6, 1e8),
}
STATIC = ("/static/index.html", "/static/style.css", "/static/overview.js", "/static/api.js")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def build_fleet(path: Path, devices: int, history_s: float, interval_s: float) -> int:
    """The fleet's registry and history, written through the DAL like the ingest does."""
    database = open_database(DatabaseConfig(sqlite_path=path))
    rng = random.Random(7)
    now = time.time()
    rows = 0
    try:
        for start in range(0, devices, 50):
            batch: list[IngestMessage] = []
            for index in range(start, min(start + 50, devices)):
                device = f"bench-{index:04d}"
                version = ("1.0.0", "1.1.0", "2.0.0")[index % 3]
                online = index % 10 != 0
                status = StatusUpdate(online, now, "0.1.0", "basicmotions", version, {"machine": "bench"})
                batch.append(IngestMessage(device, None, "status", now, status=status))
                telemetry = [
                    TelemetryItem(metric, ts, rng.uniform(low, high))
                    for step in range(int(history_s / interval_s))
                    for ts in (now - history_s + step * interval_s,)
                    for metric, (low, high) in METRICS.items()
                ]
                rows += len(telemetry)
                batch.append(IngestMessage(device, f"{index}:t", "telemetry", now, telemetry=telemetry))
                results = [
                    StoredResult(now - rng.uniform(0, 600), rng.choice(("walk", "run", "stand")), 5.0, "edge")
                    for _ in range(50)
                ]
                batch.append(IngestMessage(device, f"{index}:r", "results", now, results=results))
                drifted = index % 7 == 0
                drift = [
                    DriftItem(now - 60, drifted, rng.uniform(0.25, 0.6) if drifted else rng.uniform(0, 0.2))
                ]
                batch.append(IngestMessage(device, f"{index}:d", "drift", now, drift=drift))
            database.ingest(batch, result_bucket_s=60)
    finally:
        database.close()
    return rows


def timed_get(conn: http.client.HTTPConnection, path: str, token: bool = True) -> tuple[float, float, bytes]:
    """(seconds to the first response byte, seconds to the last, body) of one GET."""
    headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    start = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()  # returns once the status line and headers have arrived
    first = time.perf_counter() - start
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path} answered {response.status}: {body[:300]!r}")
    return first, time.perf_counter() - start, body


def ttfb(
    port: int, path: str, repeats: int, token: bool = True, pause_s: float = 0.0
) -> tuple[float, float, int]:
    """Median and p95 TTFB (ms) and the body size, after one warm-up request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        timed_get(conn, path, token)
        samples = []
        size = 0
        for _ in range(repeats):
            time.sleep(pause_s)
            first, _total, body = timed_get(conn, path, token)
            samples.append(first * 1000)
            size = len(body)
    finally:
        conn.close()
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], size


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--history-s", type=float, default=1800, help="telemetry history per device")
    parser.add_argument("--interval-s", type=float, default=10, help="seconds between telemetry samples")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    db_path = workdir / "controller.db"
    started = time.perf_counter()
    rows = build_fleet(db_path, args.devices, args.history_s, args.interval_s)
    print(
        f"fleet: {args.devices} devices, {rows:,} telemetry rows, 50 results and 1 drift report each"
        f" (written in {time.perf_counter() - started:.1f} s)"
    )

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker_port, http_port = free_port(), free_port()
    (workdir / "mosquitto.conf").write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([mosquitto, "-c", str(workdir / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    config = workdir / "controller.toml"
    config.write_text(
        f'[mqtt]\nport = {broker_port}\n[database]\nsqlite_path = "{db_path}"\n[http]\nport = {http_port}\n'
    )
    env = {**os.environ, "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": TOKEN}
    log = (workdir / "controller.log").open("wb")
    controller = subprocess.Popen(
        [sys.executable, "-m", "edgefleet", "controller", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_port(broker_port)
        wait_port(http_port)
        port, n = http_port, args.repeats
        overview = f"/api/dashboard/overview?limit={PAGE}"
        cases = [
            ("/healthz (baseline: HTTP stack)", "/healthz"),
            (f"/api/devices?limit={PAGE} (baseline: registry rows)", f"/api/devices?limit={PAGE}"),
            (f"overview, first {PAGE} by device id", overview),
            (f"overview, first {PAGE} by throughput", overview + "&sort=throughput&order=desc"),
            ("overview, online + search filter", overview + "&online=true&search=bench-00"),
            ("overview, all devices in one page", f"/api/dashboard/overview?limit={args.devices}"),
            ("/api/fleet/summary", "/api/fleet/summary"),
        ]
        print(f"\ntime to first byte, {n} requests each, keep-alive, ms")
        print(f"{'request':52} {'median':>8} {'p95':>8} {'bytes':>9} {'x healthz':>10} {'x devices':>10}")
        measured = {path: ttfb(port, path, n) for _, path in cases}
        # The fleet totals are shared for TOTALS_TTL_S between requests; this row pays for them each time.
        cold = overview + "&window_s=301"
        cases.append((f"overview, first {PAGE}, totals recomputed", cold))
        measured[cold] = ttfb(port, cold, 8, pause_s=TOTALS_TTL_S + 0.1)
        base = measured["/healthz"][0]
        devices_base = measured[f"/api/devices?limit={PAGE}"][0]
        for label, path in cases:
            median, p95, size = measured[path]
            ratios = f"{median / base:10.1f} {median / devices_base:10.1f}"
            print(f"{label:52} {median:8.1f} {p95:8.1f} {size:9,} {ratios}")

        # What the page would cost without the overview endpoint: one detail request per row.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start = time.perf_counter()
        rows_on_page = min(PAGE, args.devices)
        for index in range(rows_on_page):
            timed_get(conn, f"/api/devices/bench-{index:04d}")
        naive_ms = (time.perf_counter() - start) * 1000
        conn.close()
        overview_ms = measured[overview][0]
        print(
            f"\nnaive page: {rows_on_page} x /api/devices/{{id}} took {naive_ms:.0f} ms in all;"
            f" the overview page took {overview_ms:.1f} ms (x{naive_ms / overview_ms:.0f} faster)"
        )

        print("\npage weight of the overview (first page), bytes")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        parts = [(path, timed_get(conn, path, token=False)[2]) for path in STATIC]
        parts.append((overview, timed_get(conn, overview)[2]))
        raw_devices = timed_get(conn, f"/api/devices?limit={PAGE}")[2]
        conn.close()
        total = sum(len(body) for _, body in parts)
        total_gz = sum(len(gzip.compress(body)) for _, body in parts)
        for path, body in parts:
            print(f"  {path:52} {len(body):9,} raw {len(gzip.compress(body)):8,} gzip")
        print(f"  {'total (HTML + CSS + JS + JSON)':52} {total:9,} raw {total_gz:8,} gzip")
        print(
            f"  baseline /api/devices?limit={PAGE} JSON alone: {len(raw_devices):,} bytes;"
            f" whole page / baseline = x{total / len(raw_devices):.2f} raw,"
            f" x{total_gz / len(gzip.compress(raw_devices)):.2f} gzip"
        )
    finally:
        for process in (controller, broker):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
