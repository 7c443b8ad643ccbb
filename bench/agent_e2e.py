"""Agent end-to-end throughput beside the bare runtime loop, as a ratio.

    python bench/agent_e2e.py [--seconds 8] [--batch 64] [--rounds 2] [--bundle DIR]

Agent: the real ``edgefleet agent run`` process on a bundle (default: the demo int8 LiteRT
one; ``--bundle models/bundles/basicmotions-cloud`` runs the larger fp32 ONNX model), a replay
source looping the BasicMotions test stream as fast as possible (``realtime = false``,
``backpressure = "block"`` so nothing is dropped), every result committed to SQLite.
Throughput = results committed per second, measured from the store between two reads
after a warm-up (so start-up is not counted).

Baselines, same run: :func:`edgefleet.bench.run_benchmark`'s bare loops at the
same batch size and thread count, measured before and after each agent round (the mean of
the two is the round's baseline): ``bare`` (the backend's API on pre-made float32 batches,
quantizing like a hand-written loop would) and, for int8 models, ``bare-int8`` (pre-made,
pre-quantized batches: set_tensor/invoke/get_tensor only, the fastest loop there is).
Target: agent / bare >= 0.85.

Second baseline, for context: the same bare LiteRT loop plus the least a persisting loop must
do - argmax per window and one SQLite row per window, ``executemany`` into a WAL database
(synchronous NORMAL), 256 rows per transaction, in one thread. ``agent / (bare + SQLite)``
says how much of the gap is the agent and how much is writing every result down.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from agentbench import BUNDLE, agent_windows_per_s, model_file

from edgefleet.bench import run_benchmark

TARGET = 0.85


def bare_windows_per_s(bundle: Path, batch: int, seconds: float) -> tuple[float, float, float]:
    """bare, bare-int8 (NaN for float models) and Model.predict windows/s."""
    report = run_benchmark(model_file(bundle), batch=batch, seconds=seconds, threads=1)
    int8 = report.bare_prequantized.windows_per_s if report.bare_prequantized else math.nan
    return report.bare.windows_per_s, int8, report.predict.windows_per_s


def bare_with_sqlite_windows_per_s(bundle: Path, batch: int, seconds: float) -> float:
    """The int8 LiteRT loop plus one SQLite row per window (NaN for other models)."""
    if model_file(bundle).suffix != ".tflite":
        return math.nan
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_file(bundle)), num_threads=1)
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


def _mean(a: float, b: float) -> float:
    return (a + b) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="agent measurement per round")
    parser.add_argument("--bare-seconds", type=float, default=2.0, help="bare loop measurement per side")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="bundle directory the agent runs")
    args = parser.parse_args()
    bundle = args.bundle.resolve()

    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        before = bare_windows_per_s(bundle, args.batch, args.bare_seconds)
        sqlite_before = bare_with_sqlite_windows_per_s(bundle, args.batch, args.bare_seconds)
        agent = agent_windows_per_s(bundle, args.batch, args.seconds, args.warmup)
        after = bare_windows_per_s(bundle, args.batch, args.bare_seconds)
        sqlite_after = bare_with_sqlite_windows_per_s(bundle, args.batch, args.bare_seconds)
        figures = {
            "agent": agent,
            "bare": _mean(before[0], after[0]),
            "bare_int8": _mean(before[1], after[1]),
            "predict": _mean(before[2], after[2]),
            "bare_sqlite": _mean(sqlite_before, sqlite_after),
        }
        rounds.append(figures)
        print(
            f"round {r + 1}: agent {agent:,.0f} windows/s | bare loop {figures['bare']:,.0f} "
            f"(before {before[0]:,.0f}, after {after[0]:,.0f}) | bare-int8 {figures['bare_int8']:,.0f} "
            f"| Model.predict {figures['predict']:,.0f} | bare + SQLite {figures['bare_sqlite']:,.0f} "
            f"| agent/bare {agent / figures['bare']:.3f}x"
        )

    def median(key: str) -> float:
        return statistics.median(f[key] for f in rounds)

    print()
    print(f"model: {model_file(bundle).name}, batch {args.batch}, 1 inference thread")
    labels = {
        "agent": "agent end-to-end (replay -> buffer -> batcher -> predict -> SQLite)",
        "bare": "bare runtime loop, float32 in (same batch, same run)",
        "bare_int8": "bare loop on pre-quantized int8 batches (same run)",
        "predict": "Model.predict alone (same batch, same run)",
        "bare_sqlite": "bare int8 loop + one SQLite row per window (same run)",
    }
    for key, what in labels.items():
        if not math.isnan(median(key)):
            print(f"{what:<70}{median(key):>10,.0f} windows/s")
    ratio = statistics.median(f["agent"] / f["bare"] for f in rounds)
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(f"ratio agent/bare: {ratio:.3f}x (median of {len(rounds)} rounds; target >= {TARGET}: {verdict})")
    if not math.isnan(median("bare_int8")):
        print(f"ratio agent/bare-int8: {statistics.median(f['agent'] / f['bare_int8'] for f in rounds):.3f}x")
    if not math.isnan(median("bare_sqlite")):
        print(f"ratio agent/(bare + SQLite rows): {median('agent') / median('bare_sqlite'):.3f}x")
    per_window_us = 1e6 / median("agent") - 1e6 / median("bare")
    print(f"agent overhead over the bare loop: {per_window_us:.1f} us per window")


if __name__ == "__main__":
    main()
