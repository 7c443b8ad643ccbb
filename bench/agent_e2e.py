"""Agent end-to-end throughput beside the bare runtime loop, as a ratio.

    python bench/agent_e2e.py [--seconds 8] [--batch 64] [--rounds 2]

Agent: the real ``edgefleet agent run`` process on the demo int8 LiteRT bundle, a replay
source looping the BasicMotions test stream as fast as possible (``realtime = false``,
``backpressure = "block"`` so nothing is dropped), every result committed to SQLite.
Throughput = results committed per second, measured from the store between two reads
after a warm-up (so start-up is not counted).

Baseline, same run: :func:`edgefleet.runtime.benchmark.run_benchmark`'s bare loop (LiteRT
``Interpreter`` set_tensor/invoke/get_tensor on pre-made, pre-quantized batches) at the same
batch size and thread count, measured before and after each agent round (the mean of
the two is the round's baseline). Target: agent / bare >= 0.85.

Second baseline, for context: the same bare LiteRT loop plus the least a persisting loop must
do - argmax per window and one SQLite row per window, ``executemany`` into a WAL database
(synchronous NORMAL), 256 rows per transaction, in one thread. ``agent / (bare + SQLite)``
says how much of the gap is the agent and how much is writing every result down.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from agentbench import agent_log_tail, count_results, model_file, spawn_agent, wait_for, write_config

from edgefleet.runtime.benchmark import run_benchmark

TARGET = 0.85


def bare_windows_per_s(batch: int, seconds: float) -> tuple[float, float]:
    report = run_benchmark(model_file(), batch=batch, seconds=seconds, threads=1)
    return report.bare.windows_per_s, report.predict.windows_per_s


def bare_with_sqlite_windows_per_s(batch: int, seconds: float) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_file()), num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [batch, 50, 6])
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out_index = interpreter.get_output_details()[0]["index"]
    scale, zero = detail["quantization"]
    rng = np.random.default_rng(0)
    feed = np.clip(np.rint(rng.standard_normal((batch, 50, 6)) / scale) + zero, -128, 127).astype(np.int8)
    labels = ["Standing", "Running", "Walking", "Badminton"]
    with tempfile.TemporaryDirectory(prefix="agent-e2e-sqlite-") as tmp:
        conn = sqlite3.connect(str(Path(tmp) / "bare.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE results (id INTEGER PRIMARY KEY, stream TEXT, window_start REAL, "
            "window_end REAL, label TEXT, score REAL, latency_ms REAL, created_at REAL)"
        )
        pending: list[tuple[object, ...]] = []
        windows = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            interpreter.set_tensor(detail["index"], feed)
            interpreter.invoke()
            out = interpreter.get_tensor(out_index)
            best = out.argmax(axis=1)
            now = time.time()
            for b, row in zip(best, out, strict=True):
                pending.append(("imu", now, now, labels[int(b)], float(row[int(b)]), 0.0, now))
            windows += batch
            if len(pending) >= 256:
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO results (stream, window_start, window_end, label, score, latency_ms, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    pending,
                )
                conn.execute("COMMIT")
                pending.clear()
        elapsed = time.perf_counter() - start
        conn.close()
    return windows / elapsed


def agent_windows_per_s(batch: int, seconds: float, warmup: float) -> float:
    with tempfile.TemporaryDirectory(prefix="agent-e2e-") as tmp:
        workdir = Path(tmp)
        config = write_config(workdir, batch=batch)
        db = workdir / "state" / "store.db"
        proc = spawn_agent(config)
        try:
            try:
                wait_for(lambda: count_results(db) > 0, timeout=60)
            except TimeoutError:
                raise SystemExit(f"no result after 60 s; agent log:\n{agent_log_tail(config)}") from None
            time.sleep(warmup)
            n0, t0 = count_results(db), time.perf_counter()
            time.sleep(seconds)
            n1, t1 = count_results(db), time.perf_counter()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if proc.returncode != 0:
            raise SystemExit(f"agent exited with {proc.returncode}")
        return (n1 - n0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="agent measurement per round")
    parser.add_argument("--bare-seconds", type=float, default=2.0, help="bare loop measurement per side")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    ratios, agents, bares, predicts, persisting = [], [], [], [], []
    for r in range(args.rounds):
        bare_before, predict_before = bare_windows_per_s(args.batch, args.bare_seconds)
        sqlite_before = bare_with_sqlite_windows_per_s(args.batch, args.bare_seconds)
        agent = agent_windows_per_s(args.batch, args.seconds, args.warmup)
        bare_after, predict_after = bare_windows_per_s(args.batch, args.bare_seconds)
        sqlite_after = bare_with_sqlite_windows_per_s(args.batch, args.bare_seconds)
        bare = (bare_before + bare_after) / 2
        predict = (predict_before + predict_after) / 2
        with_sqlite = (sqlite_before + sqlite_after) / 2
        ratios.append(agent / bare)
        agents.append(agent)
        bares.append(bare)
        predicts.append(predict)
        persisting.append(with_sqlite)
        print(
            f"round {r + 1}: agent {agent:,.0f} windows/s | bare loop {bare:,.0f} "
            f"(before {bare_before:,.0f}, after {bare_after:,.0f}) | Model.predict {predict:,.0f} "
            f"| bare + SQLite {with_sqlite:,.0f} | agent/bare {agent / bare:.3f}x"
        )
    ratio = statistics.median(ratios)
    print()
    print(f"model: {model_file().name}, batch {args.batch}, 1 inference thread")
    figures = {
        "agent end-to-end (replay -> buffer -> batcher -> predict -> SQLite)": statistics.median(agents),
        "bare runtime loop (same batch, same run)": statistics.median(bares),
        "Model.predict alone (same batch, same run)": statistics.median(predicts),
        "bare loop + one SQLite row per window (same run)": statistics.median(persisting),
    }
    for what, value in figures.items():
        print(f"{what:<70}{value:>10,.0f} windows/s")
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(f"ratio agent/bare: {ratio:.3f}x (median of {len(ratios)} rounds; target >= {TARGET}: {verdict})")
    persist_ratio = statistics.median(agents) / statistics.median(persisting)
    print(f"ratio agent/(bare + SQLite rows): {persist_ratio:.3f}x")


if __name__ == "__main__":
    main()
