"""Store write throughput: Store.write_results in batches vs raw sqlite3 executemany, same run.

    python bench/store_writer.py [--rows 100000] [--batches 32,256] [--synchronous NORMAL]

The baseline is the floor of what SQLite can do with these rows: one plain sqlite3
executemany in ONE transaction into the same schema and pragmas, rows converted from the same
ResultRecord objects. A second baseline commits raw executemany per batch, to separate the cost
of committing often (inherent to batching) from the store's own overhead. Ratios > 1 are faster
than the baseline. Target: write_results >= 0.8x the one-transaction baseline.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgefleet.agent.store import ResultRecord, Store, StoreConfig

INSERT = (
    "INSERT INTO results (stream, window_start, window_end, model_name, model_version, label, score, "
    "outputs, latency_ms, answered_by, fallback_reason, window_seq, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def make_records(n: int) -> list[ResultRecord]:
    start = time.time()
    return [
        ResultRecord(
            "imu", start + i, start + i + 2.56, "basicmotions", "1.0.0", ("walking", "running")[i % 2],
            0.5 + (i % 50) / 100, [0.1, 0.2, 0.3, 0.4], 1.7, window_seq=i, created_at=start + i,
        )
        for i in range(n)
    ]  # fmt: skip


def as_tuple(r: ResultRecord) -> tuple[object, ...]:
    return (
        r.stream, r.window_start, r.window_end, r.model_name, r.model_version, r.label, r.score, None,
        r.latency_ms, r.answered_by, r.fallback_reason, r.window_seq, r.created_at,
    )  # fmt: skip


def fresh_store_file(directory: Path, name: str, config: StoreConfig) -> Path:
    path = directory / name
    Store.open(path, config.model_copy(update={"path": path})).close()  # schema, WAL, pragmas
    return path


def raw_connection(path: Path, config: StoreConfig) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous = {config.synchronous}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {config.wal_autocheckpoint_pages}")
    return conn


def bench_raw(path: Path, config: StoreConfig, records: Sequence[ResultRecord], batch: int) -> float:
    """``batch=0``: all rows in one transaction."""
    conn = raw_connection(path, config)
    started = time.perf_counter()
    step = batch or len(records)
    for offset in range(0, len(records), step):
        conn.execute("BEGIN")
        conn.executemany(INSERT, [as_tuple(r) for r in records[offset : offset + step]])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def bench_store(path: Path, config: StoreConfig, records: Sequence[ResultRecord], batch: int) -> float:
    store = Store.open(path, config.model_copy(update={"path": path}))
    store.write_results(records[:1])  # first write runs retention once; keep it out of the timing
    started = time.perf_counter()
    for offset in range(1, len(records), batch):
        store.write_results(records[offset : offset + batch])
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batches", default="32,256")
    parser.add_argument("--synchronous", default="NORMAL", choices=("OFF", "NORMAL", "FULL"))
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs for each figure")
    args = parser.parse_args()
    config = StoreConfig(synchronous=args.synchronous)
    records = make_records(args.rows)
    batches = [int(b) for b in args.batches.split(",")]

    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        directory = Path(tmp)
        run = 0

        def best(fn: Callable[[Path, StoreConfig, Sequence[ResultRecord], int], float], batch: int) -> float:
            nonlocal run
            times: list[float] = []
            for _ in range(args.repeat):
                run += 1
                times.append(fn(fresh_store_file(directory, f"run{run}.db", config), config, records, batch))
            return min(times)

        baseline = best(bench_raw, 0)
        print(f"rows={args.rows} synchronous={args.synchronous} (best of {args.repeat})")
        print(f"{'what':44} {'rows/s':>10} {'vs 1-tx raw':>12} {'vs raw same batch':>18}")
        label = "raw sqlite3 executemany, 1 transaction"
        print(f"{label:44} {args.rows / baseline:10.0f} {1.0:12.2f}x")
        for batch in batches:
            raw_batched = best(bench_raw, batch)
            store = best(bench_store, batch)
            print(
                f"{f'raw sqlite3 executemany, batch {batch}':44} {args.rows / raw_batched:10.0f} "
                f"{baseline / raw_batched:12.2f}x {1.0:17.2f}x"
            )
            print(
                f"{f'Store.write_results, batch {batch}':44} {args.rows / store:10.0f} "
                f"{baseline / store:12.2f}x {raw_batched / store:17.2f}x"
            )


if __name__ == "__main__":
    main()
