"""Store write throughput: Store.write_results / write_result_rows in batches vs raw sqlite3
executemany, same run.

    python bench/store_writer.py [--rows 100000] [--batches 32,256] [--synchronous NORMAL]

The baseline: one plain sqlite3 executemany in ONE transaction into the same schema and
pragmas, rows converted from the same ResultRecord objects (the obvious way to write them, and
no commit cost to speak of). A second baseline commits raw executemany per batch, to separate the cost
of committing often (inherent to batching) from the store's own overhead. Ratios > 1 are faster
than the baseline. Target: the store's writes >= 0.8x the one-transaction baseline (CPU time);
each figure is also given as microseconds per stored result (wall and CPU).

Ratios are given on wall time and on this process's CPU time: on a shared, loaded machine the
CPU-time ratio is the stable one (the work is CPU-bound; fsyncs only happen at checkpoints with
synchronous=NORMAL, alike for every variant). Variants run in interleaved rounds, best of each.

``Store.write_result_rows`` is the agent's path (rows built by the pipeline, no record objects,
no per-record checks); its rows are made from the records inside the timing, as the raw
baseline's are.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgefleet.agent.store import ResultRecord, Store, StoreConfig
from edgefleet.agent.store.rows import result_rows

INSERT = (
    "INSERT INTO results (stream, window_start, window_end, model_name, model_version, label, score, "
    "outputs, latency_ms, answered_by, fallback_reason, window_seq, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


TARGET = 0.8  # issue: the store's writer >= 0.8x of one raw executemany transaction on the same rows

# Bytes the store wrote to the device per batch size (its flash-wear meter), from the last run.
WRITTEN: dict[int, int] = {}


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


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process)


def _clock() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def bench_raw(path: Path, config: StoreConfig, records: Sequence[ResultRecord], batch: int) -> Timing:
    """``batch=0``: all rows in one transaction."""
    conn = raw_connection(path, config)
    started = _clock()
    step = batch or len(records)
    for offset in range(0, len(records), step):
        conn.execute("BEGIN")
        conn.executemany(INSERT, [as_tuple(r) for r in records[offset : offset + step]])
        conn.execute("COMMIT")
    elapsed = _since(started)
    conn.close()
    return elapsed


def bench_store(path: Path, config: StoreConfig, records: Sequence[ResultRecord], batch: int) -> Timing:
    store = Store.open(path, config.model_copy(update={"path": path}))
    store.write_results(records[:1])  # first write runs retention once; keep it out of the timing
    started = _clock()
    for offset in range(1, len(records), batch):
        store.write_results(records[offset : offset + batch])
    elapsed = _since(started)
    WRITTEN[batch] = store.stats().bytes_written_total
    store.close()
    return elapsed


def bench_store_rows(path: Path, config: StoreConfig, records: Sequence[ResultRecord], batch: int) -> Timing:
    store = Store.open(path, config.model_copy(update={"path": path}))
    store.write_results(records[:1])
    started = _clock()
    for offset in range(1, len(records), batch):
        store.write_result_rows(result_rows(records[offset : offset + batch], raw_outputs=False))
    elapsed = _since(started)
    store.close()
    return elapsed


Bench = Callable[[Path, StoreConfig, Sequence[ResultRecord], int], Timing]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batches", default="32,256")
    parser.add_argument("--synchronous", default="NORMAL", choices=("OFF", "NORMAL", "FULL"))
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is the best of them")
    args = parser.parse_args()
    config = StoreConfig(synchronous=args.synchronous)
    records = make_records(args.rows)
    variants: list[tuple[str, Bench, int]] = [("raw sqlite3 executemany, 1 transaction", bench_raw, 0)]
    for batch in (int(b) for b in args.batches.split(",")):
        variants.append((f"raw sqlite3 executemany, batch {batch}", bench_raw, batch))
        variants.append((f"Store.write_results, batch {batch}", bench_store, batch))
        variants.append((f"Store.write_result_rows, batch {batch}", bench_store_rows, batch))

    best: dict[str, Timing] = {}
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        # Interleaved rounds, so a burst of load from elsewhere hits every variant alike.
        for round_no in range(args.repeat):
            for label, fn, batch in variants:
                path = fresh_store_file(
                    Path(tmp), f"r{round_no}-{len(best)}-{batch}-{fn.__name__}.db", config
                )
                wall, cpu = fn(path, config, records, batch)
                old = best.get(label, (math.inf, math.inf))
                best[label] = (min(old[0], wall), min(old[1], cpu))

    base_wall, base_cpu = best[variants[0][0]]
    print(f"rows={args.rows} synchronous={args.synchronous} (best of {args.repeat} interleaved rounds)")
    print(
        f"{'what':42} {'rows/s':>8} {'us/row':>7} {'CPU us/row':>10} {'vs 1-tx raw':>12} {'(CPU time)':>11} "
        f"{'vs raw same batch (CPU)':>24}"
    )
    for label, fn, batch in variants:
        wall, cpu = best[label]
        same_batch = ""
        if fn in (bench_store, bench_store_rows):
            raw_cpu = best[f"raw sqlite3 executemany, batch {batch}"][1]
            same_batch = f"{raw_cpu / cpu:.2f}x"
        print(
            f"{label:42} {args.rows / wall:8.0f} {wall / args.rows * 1e6:7.2f} {cpu / args.rows * 1e6:10.2f} "
            f"{base_wall / wall:11.2f}x {base_cpu / cpu:10.2f}x {same_batch:>24}"
        )
    for label, fn, _batch in variants:
        if fn in (bench_store, bench_store_rows):
            ratio = base_cpu / best[label][1]
            verdict = "met" if ratio >= TARGET else "NOT met"
            print(f"target {label} >= {TARGET}x of the 1-tx raw baseline (CPU): {ratio:.2f}x, {verdict}")
    for batch, written in WRITTEN.items():
        print(f"store wrote {written / args.rows:.0f} bytes to the device per result at batch {batch}")


if __name__ == "__main__":
    main()
