"""Flash wear of the running agent: bytes it sends to the storage device per stored result.

    python bench/flash_wear.py [--seconds 120] [--rates 5 50] [--no-controller] [--store KEY=VALUE ...]
    python bench/flash_wear.py --pages

``--pages`` instead counts, for each kind of store write the agent makes at a slow rate, the
WAL pages one transaction appends and which tables and indexes they belong to (SQLite's
``dbstat``), each write alone and with the commit policy's held writes folded in.

For each rate, the real ``edgefleet agent run`` process runs with the default configuration
(only paths, the broker port and a synthetic 6-channel source paced in real time at
``10 x rate`` samples/s are set: the demo model's hop is 10 samples) and sync ON, against a real
Mosquitto and a real ``edgefleet controller serve`` (so results flow and are acknowledged as in
a fleet). After a warm-up (the first result stored and one commit interval), ``write_bytes``
of ``/proc/<agent pid>/io`` - what the kernel sent, or will send, to the block device on
the process's behalf: WAL frames, checkpoints, the status file, logs, everything - is read at
the start and end of ``--seconds``; results stored in between are counted from the store.

Baseline, same run, same rows: a hand-written loop (plain ``sqlite3``, one table with the same
columns, WAL, ``synchronous=NORMAL``, default page size) inserting the rows the agent stored,
``rate`` rows per transaction, i.e. one transaction per second of the agent's stream. Its
bytes come from ``/proc/thread-self/io`` around the loop. Goal at 5 windows/s: <= 2 kB per
stored result and <= 1.5x the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgefleet.agent.store.rows import RESULT_COLUMNS  # noqa: E402
from tests.support.broker import MosquittoBroker, free_port  # noqa: E402

BUNDLE = ROOT / "models" / "bundles" / "basicmotions-edge-tflite"
HOP = 10
GOAL_BYTES_PER_RESULT = 2000.0
GOAL_RATIO = 1.5
TOKEN = "bench-flash-wear-token-0123456789abcdef"


def write_bytes(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/io has no write_bytes line")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFLEET_", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_controller(workdir: Path, broker: MosquittoBroker) -> tuple[subprocess.Popen[bytes], Path]:
    port = free_port()
    example = subprocess.run(
        [sys.executable, "-m", "edgefleet", "controller", "example-config"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = workdir / "controller.toml"
    config.write_text(
        example.replace("port = 1883", f"port = {broker.port}").replace("port = 8080", f"port = {port}")
    )
    log = workdir / "controller.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "controller", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**child_env(), "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": TOKEN},
            cwd=workdir,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json().get("mqtt_connected"):
                return process, log
        except (httpx.HTTPError, ValueError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("controller did not start:\n" + log.read_text(errors="replace")[-2000:])
        time.sleep(0.2)


def agent_config(workdir: Path, rate: float, broker_port: int, store_lines: list[str]) -> Path:
    state = workdir / "state"
    text = f"""
[device]
id = "flash-bench"
state_dir = "{state}"

[[sources]]
type = "synthetic"
name = "imu"
channels = 6
rate_hz = {rate * HOP}

[model]
bundle = "{BUNDLE}"

[store]
path = "{state / "store.db"}"
{chr(10).join(store_lines)}

[sync]
enabled = true
host = "127.0.0.1"
port = {broker_port}
"""
    path = workdir / "agent.toml"
    path.write_text(text)
    return path


def max_result_id(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM results").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def stored_rows(db: Path, first: int, last: int) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        columns = ", ".join(RESULT_COLUMNS)
        return list(conn.execute(f"SELECT {columns} FROM results WHERE id BETWEEN ? AND ?", (first, last)))
    finally:
        conn.close()


def prefill(db: Path, hours: float, rate: float) -> None:
    """``hours`` of synced history, as a store that has run that long holds it: results at
    ``rate``, the health monitor's 17 samples every 10 s. B-trees a day old are what a device
    writes into; a fresh store hides whatever grows with them (an index entry per metric name
    landed on its own page once the metrics table was some hundred ticks old)."""
    from edgefleet.agent.store import MetricSample, ResultRecord, Store, StoreConfig
    from edgefleet.agent.store.rows import result_rows

    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store.open(db, StoreConfig(path=db, synchronous="OFF"))
    start = time.time() - hours * 3600
    names = [f"metric_{i}" for i in range(17)]
    try:
        for tick in range(int(hours * 360)):
            t = start + tick * 10.0
            records = [
                ResultRecord(
                    "imu",
                    t + i / rate,
                    t + i / rate + 5,
                    "basicmotions-edge-tflite",
                    "1.0.0",
                    "Walking",
                    0.8,
                    None,
                    1.2,
                    window_seq=tick * 50 + i,
                    created_at=t + i / rate,
                )
                for i in range(int(rate * 10))
            ]
            store.write_result_rows(result_rows(records, raw_outputs=False))
            store.write_metrics([MetricSample(t, name, 1.0) for name in names])
            if tick % 50 == 49:
                store.outbox_ack([item.id for item in store.outbox_peek(1000)])
        store.outbox_ack([item.id for item in store.outbox_peek(100_000)])
        store.checkpoint("TRUNCATE")
    finally:
        store.close()


def run_agent(
    workdir: Path,
    rate: float,
    seconds: float,
    broker: MosquittoBroker,
    store_lines: list[str],
    history_h: float,
) -> tuple[int, int, Path]:
    """(bytes written, results stored) during the measured ``seconds``, and the store's path."""
    config = agent_config(workdir, rate, broker.port, store_lines)
    db = workdir / "state" / "store.db"
    if history_h > 0:
        prefill(db, history_h, rate)
        print(f"  ({history_h:.3g} h of history at {rate:g} windows/s in the store)", flush=True)
    first_id = max_result_id(db) if db.exists() else 0
    log = workdir / "agent.log"
    with log.open("ab") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "agent", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 120
        while not db.exists() or max_result_id(db) == first_id:
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("agent stored nothing:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        time.sleep(12.0)  # past the first commit intervals, the first metrics and the first sync round
        bytes_before, id_before = write_bytes(agent.pid), max_result_id(db)
        time.sleep(seconds)
        bytes_after, id_after = write_bytes(agent.pid), max_result_id(db)
        if agent.poll() is not None:
            raise RuntimeError("agent exited during the run:\n" + log.read_text(errors="replace")[-3000:])
        facts = json.loads((workdir / "state" / "agent-status.json").read_text()).get("store") or {}
        store_h, process_h = facts.get("bytes_written_per_hour"), facts.get("process_bytes_written_per_hour")
        if store_h and process_h:
            # Both over the agent's life so far (start-up included): the share, not the figure.
            print(f"  the agent's own counters: store transactions {store_h / process_h:.0%} of its writes")
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
    return bytes_after - bytes_before, id_after - id_before, db


def baseline(workdir: Path, rows: list[tuple[object, ...]], per_transaction: int) -> int:
    """Bytes a hand-written loop writes for ``rows``, ``per_transaction`` rows per transaction."""
    path = workdir / "baseline.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    columns = ", ".join(RESULT_COLUMNS)
    conn.execute(f"CREATE TABLE results (id INTEGER PRIMARY KEY, {columns})")
    insert = f"INSERT INTO results ({columns}) VALUES ({', '.join('?' * len(RESULT_COLUMNS))})"
    fd = os.open("/proc/thread-self/io", os.O_RDONLY)
    try:

        def thread_write_bytes() -> int:
            text = os.pread(fd, 1024, 0).decode()
            return int(next(line for line in text.splitlines() if line.startswith("write_bytes:")).split()[1])

        before = thread_write_bytes()
        for start in range(0, len(rows), per_transaction):
            conn.execute("BEGIN")
            conn.executemany(insert, rows[start : start + per_transaction])
            conn.execute("COMMIT")
        conn.close()  # a clean close checkpoints, as the agent's WAL is checkpointed over time
        return thread_write_bytes() - before
    finally:
        os.close(fd)


def _wal_pages(db: Path) -> list[int]:
    data = db.with_name(db.name + "-wal").read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    return [struct.unpack(">I", data[o : o + 4])[0] for o in range(32, len(data) - 23, 24 + page_size)]


def _owners(db: Path) -> dict[int, str]:
    conn = sqlite3.connect(db)
    try:
        owners = {int(page): str(name) for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
    finally:
        conn.close()
    owners[1] = "header (page 1)"
    return owners


def pages_per_transaction() -> None:
    """WAL pages appended by each kind of transaction, by owner (steady state, 4 KiB pages)."""
    from edgefleet.agent.store import MetricSample, ResultRecord, Store, StoreConfig
    from edgefleet.agent.store.rows import result_rows

    def rows(n: int, start: int) -> list[tuple[object, ...]]:
        now = time.time()
        records = [
            ResultRecord(
                "imu",
                now + i,
                now + i + 5,
                "basicmotions-edge-tflite",
                "1.0.0",
                "Walking",
                0.8,
                None,
                1.2,
                window_seq=start + i,
                created_at=now,
            )
            for i in range(n)
        ]
        return result_rows(records, raw_outputs=False)

    def metrics() -> list[MetricSample]:
        # What the health monitor sends every metrics interval for one stream: 17 samples.
        return [MetricSample(time.time(), f"metric_{i}", float(i)) for i in range(17)]

    with tempfile.TemporaryDirectory(prefix="flash-pages-") as tmp:
        db = Path(tmp) / "store.db"
        store = Store.open(db, StoreConfig(path=db, wal_autocheckpoint_pages=0, retention_interval_s=1e9))
        seq = 0

        def ack_all() -> None:
            store.outbox_ack([item.id for item in store.outbox_peek(100)])

        def results(n: int) -> None:
            nonlocal seq
            store.write_result_rows(rows(n, seq))
            seq += n

        def held_ack_metrics_results() -> None:
            ack_all()
            store.queue_metrics(metrics())
            results(50)

        def held_ack_results() -> None:
            ack_all()
            results(50)

        def metrics_alone() -> None:
            store.write_metrics(metrics())

        # (what, held?, set-up before the measured transaction, the measured write)
        cases: list[tuple[str, bool, Callable[[], None], Callable[[], None]]] = [
            ("1 result (one per commit)", False, ack_all, lambda: results(1)),
            ("50 results in one commit", False, ack_all, lambda: results(50)),
            ("ack of one results item", False, lambda: results(50), ack_all),
            ("17 metric samples", False, ack_all, metrics_alone),
            ("50 results + held ack + held metrics", True, lambda: results(50), held_ack_metrics_results),
            ("50 results + held ack", True, lambda: results(50), held_ack_results),
        ]
        print("WAL pages appended per transaction (steady state; 4 KiB each, plus 24-byte frame headers)")
        for label, held, setup, write in cases:
            for _ in range(5):  # warm: the tables' current pages exist, as in a running agent
                setup()
                write()
            setup()
            store.checkpoint("TRUNCATE")
            store.hold_writes(3600.0 if held else None)
            write()
            store.hold_writes(None)
            pages = _wal_pages(db)
            owners = _owners(db)
            by_owner = Counter(owners.get(page, "pointer map / free") for page in pages)
            detail = ", ".join(f"{name} {n}" for name, n in by_owner.most_common())
            print(f"  {label:38s} {len(pages):3d} pages: {detail}")
            store.checkpoint("TRUNCATE")
        # A checkpoint copies every page changed since the last one into the main file, once:
        # 40 commits of 75 results with their held ack and metrics are 10 min at 5 windows/s.
        store.hold_writes(3600.0)
        for _ in range(40):
            ack_all()
            store.queue_metrics(metrics())
            results(75)
        store.hold_writes(None)
        frames = len(_wal_pages(db))
        before = store.stats().bytes_written_total
        store.checkpoint("PASSIVE")
        copied = store.stats().bytes_written_total - before
        print(
            f"  checkpoint after 40 such commits ({frames} WAL pages): {copied / 4096:.0f} pages copied "
            f"into the main file, {copied / 3000:.0f} B per result"
            + ("" if copied else " (tmpfs, or no I/O accounting: nothing reached a device)")
        )
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="measured time per rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[5.0, 50.0], help="windows per second")
    parser.add_argument("--no-controller", action="store_true", help="broker only (nothing acknowledges)")
    parser.add_argument(
        "--store", action="append", default=[], metavar="KEY=VALUE", help="extra [store] lines (TOML)"
    )
    parser.add_argument(
        "--history-hours",
        type=float,
        default=24.0,
        help="synced history in the store before the agent starts",
    )
    parser.add_argument("--pages", action="store_true", help="WAL pages per kind of transaction, then exit")
    args = parser.parse_args()
    if args.pages:
        pages_per_transaction()
        return 0
    try:
        write_bytes("self")
    except (OSError, RuntimeError) as exc:
        print(f"cannot read /proc/self/io here ({exc}): this benchmark needs Linux I/O accounting")
        return 2
    met = True
    print(
        f"agent: default config, sync on, up to {args.history_hours:g} h of synced history in the store, "
        f"{args.seconds:.0f} s measured per rate" + ("" if args.no_controller else ", with a controller")
    )
    print(
        f"{'windows/s':>9} {'results':>8} {'agent B/result':>15} {'agent MiB/h':>12} "
        f"{'baseline B/result':>18} {'baseline MiB/h':>15} {'agent/baseline':>15}"
    )
    for rate in args.rates:
        with tempfile.TemporaryDirectory(prefix="flash-wear-") as tmp:
            workdir = Path(tmp)
            broker = MosquittoBroker(workdir).start()
            controller = None
            try:
                if not args.no_controller:
                    controller, _ = start_controller(workdir, broker)
                # At most ~500k results of history: a day at 50 windows/s would pass the soft cap.
                history_h = min(args.history_hours, 500_000 / (rate * 3600))
                written, results, db = run_agent(workdir, rate, args.seconds, broker, args.store, history_h)
            finally:
                if controller is not None:
                    controller.send_signal(signal.SIGTERM)
                    try:
                        controller.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        controller.kill()
                broker.stop()
            if results <= 0:
                print(f"{rate:9g}: no results stored during the run")
                met = False
                continue
            last = max_result_id(db)
            rows = stored_rows(db, last - results + 1, last)
            base = baseline(workdir, rows, max(1, round(rate)))
        per_result = written / results
        base_per_result = base / len(rows)
        hours = args.seconds / 3600
        ratio = per_result / base_per_result if base_per_result else float("inf")
        print(
            f"{rate:9g} {results:8d} {per_result:15.0f} {written / hours / 2**20:12.2f} "
            f"{base_per_result:18.0f} {base / len(rows) * results / hours / 2**20:15.2f} {ratio:14.2f}x",
            flush=True,
        )
        if rate == 5.0:
            ok = per_result <= GOAL_BYTES_PER_RESULT and ratio <= GOAL_RATIO
            met = met and ok
            print(
                f"goal at 5 windows/s: <= {GOAL_BYTES_PER_RESULT:.0f} B/result and <= {GOAL_RATIO}x "
                f"baseline: {per_result:.0f} B, {ratio:.2f}x, {'met' if ok else 'NOT met'}"
            )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
