"""Draining a stored backlog to a local Mosquitto: edgefleet's sync beside a naive uplink.

    python bench/sync_drain.py [--results 100000] [--batch 100] [--protocol mqtt5] [--repeat 3]
                               [--json out.json]

Both paths start from the same kind of SQLite store holding ``--results`` unsynced results
(written ``--batch`` per ``write_results`` call, as the pipeline does) and end when the broker
has acknowledged everything:

- edgefleet: ``SyncService`` draining the outbox (columnar msgpack + zstd batches, QoS 1,
  rows removed only after PUBACK).
- naive baseline: paho, one JSON message per result, QoS 1, at most 100 unacknowledged;
  results read from the store in chunks, each marked synced when its PUBACK arrives (the same
  delivery guarantee as the sync).

"wire bytes" are MQTT PUBLISH packet bytes (fixed header, topic, packet id, properties,
payload); TCP/IP overhead and the 4-byte PUBACKs are left out of both.
Goal: >= 10x results/s and <= 0.2x wire bytes per result.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
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

from edgefleet.agent.store import ResultRecord, Store, StoreConfig  # noqa: E402
from edgefleet.agent.store.rows import RESULT_COLUMNS  # noqa: E402
from edgefleet.cloud_sync import SyncConfig, SyncService  # noqa: E402
from edgefleet.cloud_sync.config import MqttProtocol  # noqa: E402
from edgefleet.cloud_sync.uplink import wire_bytes  # noqa: E402
from tests.support.broker import MosquittoBroker  # noqa: E402

NAIVE_WINDOW = 100
LABELS = ("standing", "walking", "running", "badminton")


def fill(path: Path, total: int, batch: int) -> Store:
    store = Store.open(
        path, StoreConfig(path=path, synchronous="OFF", max_bytes=1 << 30, hard_max_bytes=1 << 31)
    )
    t0 = 1_700_000_000.0
    for start in range(0, total, batch):
        records = []
        for i in range(start, min(total, start + batch)):
            stream = f"imu{i % 4}"
            seq = i // 4
            records.append(
                ResultRecord(
                    stream=stream,
                    window_start=t0 + seq * 0.5,
                    window_end=t0 + seq * 0.5 + 1.0,
                    model_name="basicmotions-int8",
                    model_version="1.0.0",
                    label=LABELS[(i * 7) % 4],
                    score=0.55 + ((i * 37) % 400) / 1000.0,
                    outputs=None,
                    latency_ms=1.8 + ((i * 13) % 50) / 100.0,
                    window_seq=seq,
                    created_at=t0 + seq * 0.5 + 1.01,
                )
            )
        store.write_results(records)
    return store


def run_edgefleet(
    broker: MosquittoBroker, store: Store, total: int, protocol: MqttProtocol
) -> dict[str, Any]:
    # The baseline is a bare paho publisher: compare the broker path (no edgefleet controller here).
    config = SyncConfig(port=broker.port, protocol=protocol, drain_interval_s=0.05, end_to_end_ack=False)
    service = SyncService(store, config, "bench-edgefleet", state_path=Path(tempfile.mkstemp()[1]))
    start = time.perf_counter()
    service.start()
    while service.state().results_sent < total:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    state = service.state()
    service.stop()
    messages = state.messages_sent_by_kind.get("results", 0)
    wire = state.bytes_sent_by_kind.get("results", 0)
    assert not store.outbox_backlog(), store.outbox_backlog()
    return {"seconds": elapsed, "messages": messages, "wire_bytes": wire, "results": state.results_sent}


def run_naive(broker: MosquittoBroker, store: Store, total: int, protocol: str) -> dict[str, Any]:
    v5 = protocol == "mqtt5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-naive", protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    )
    acked = 0
    done = threading.Event()
    lock = threading.Lock()
    # Bounded like a real uplink: queueing 100k messages inside paho is quadratic (it rescans its
    # queue on every PUBACK), so the baseline keeps at most WINDOW messages outstanding.
    window = threading.Semaphore(NAIVE_WINDOW)
    client.max_inflight_messages_set(NAIVE_WINDOW)

    mids: dict[int, int] = {}
    # Same guarantee as the sync: a result counts as delivered once its PUBACK arrived, and only
    # then is it marked synced (the naive way: one UPDATE per acknowledgement).
    db = sqlite3.connect(store.path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")

    early: set[int] = set()
    db_lock = threading.Lock()

    def mark_synced(result_id: int) -> None:
        with db_lock:
            db.execute("UPDATE results SET synced_at = ? WHERE id = ?", (time.time(), result_id))

    def on_publish(client: Any, userdata: Any, mid: int, *_: Any) -> None:
        # Runs inside paho's locks: never wait here on a lock the publishing thread may hold.
        nonlocal acked
        window.release()
        with lock:
            result_id = mids.pop(mid, None)
            if result_id is None:
                early.add(mid)  # PUBACK beat the publisher to recording the mid
            acked += 1
            if acked == total:
                done.set()
        if result_id is not None:
            mark_synced(result_id)

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    topic = "edgefleet/v1/bench-naive/results"
    wire = 0
    sent = 0
    start = time.perf_counter()
    last_id = 0
    while sent < total:
        rows = _unsynced(store, last_id, 1000)
        if not rows:
            break
        for row in rows:
            last_id = row["id"]
            doc = {"device_id": "bench-naive", "message_id": row["id"], **{k: row[k] for k in RESULT_COLUMNS}}
            payload = json.dumps(doc).encode()
            window.acquire()
            info = client.publish(topic, payload, qos=1)
            with lock:
                acked_already = info.mid in early
                early.discard(info.mid)
                if not acked_already:
                    mids[info.mid] = row["id"]
            if acked_already:
                mark_synced(row["id"])
            wire += wire_bytes(topic, len(payload), v5=v5)
            sent += 1
    done.wait(600)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    db.close()
    return {"seconds": elapsed, "messages": sent, "wire_bytes": wire, "results": acked}


def _unsynced(store: Store, after_id: int, limit: int) -> list[dict[str, Any]]:
    with store._read() as conn:  # the naive uplink reads the results table directly
        cursor = conn.execute(
            f"SELECT id, {', '.join(RESULT_COLUMNS)} FROM results WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100, help="results per write_results call (outbox row)")
    parser.add_argument("--protocol", choices=["mqtt5", "mqtt311"], default="mqtt5")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the median run is shown")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    naive_runs: list[dict[str, Any]] = []
    ours_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        workdir = Path(tmp) / "broker"
        workdir.mkdir()
        with MosquittoBroker(workdir, global_lines=["user root", "max_inflight_messages 0"]) as broker:
            for run in range(args.repeat):
                t0 = time.perf_counter()
                ours_store = fill(Path(tmp) / f"edgefleet-{run}.db", args.results, args.batch)
                naive_store = fill(Path(tmp) / f"naive-{run}.db", args.results, args.batch)
                filled = time.perf_counter() - t0
                print(f"run {run + 1}: filled two stores with {args.results} results in {filled:.1f}s")
                naive_runs.append(run_naive(broker, naive_store, args.results, args.protocol))
                ours_runs.append(run_edgefleet(broker, ours_store, args.results, args.protocol))
                ours_store.close()
                naive_store.close()
                per_run = (ours_runs[-1]["results"] / ours_runs[-1]["seconds"]) / (
                    naive_runs[-1]["results"] / naive_runs[-1]["seconds"]
                )
                print(f"run {run + 1}: edgefleet/naive results/s ratio {per_run:.1f}x")
    # Median run of each path: the machine is shared, one noisy run should not decide.
    naive = sorted(naive_runs, key=lambda r: r["seconds"])[len(naive_runs) // 2]
    ours = sorted(ours_runs, key=lambda r: r["seconds"])[len(ours_runs) // 2]

    rows = []
    for name, r in (("naive JSON/result", naive), ("edgefleet sync", ours)):
        rows.append(
            {
                "path": name,
                "results": r["results"],
                "messages": r["messages"],
                "seconds": round(r["seconds"], 3),
                "results_per_s": round(r["results"] / r["seconds"], 1),
                "wire_bytes_per_result": round(r["wire_bytes"] / max(1, r["results"]), 2),
            }
        )
    speedup = rows[1]["results_per_s"] / rows[0]["results_per_s"]
    size_ratio = rows[1]["wire_bytes_per_result"] / rows[0]["wire_bytes_per_result"]
    print(
        f"\n{'path':<20}{'results':>10}{'messages':>10}{'seconds':>10}{'results/s':>12}{'wire B/result':>15}"
    )
    for row in rows:
        print(
            f"{row['path']:<20}{row['results']:>10}{row['messages']:>10}{row['seconds']:>10.2f}"
            f"{row['results_per_s']:>12.0f}{row['wire_bytes_per_result']:>15.2f}"
        )
    print(
        f"\nratio edgefleet/naive: {speedup:.1f}x results/s (goal >= 10x), "
        f"{size_ratio:.3f}x bytes/result (goal <= 0.2x)"
    )
    print(f"protocol {args.protocol}, {args.batch} results per outbox row, median of {args.repeat} runs each")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "speedup": speedup, "bytes_ratio": size_ratio}, indent=2)
        )
    return 0 if speedup >= 10 and size_ratio <= 0.2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
