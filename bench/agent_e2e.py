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
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path

from agentbench import count_results, model_file, spawn_agent, wait_for, write_config

from edgefleet.runtime.benchmark import run_benchmark

TARGET = 0.85


def bare_windows_per_s(batch: int, seconds: float) -> tuple[float, float]:
    report = run_benchmark(model_file(), batch=batch, seconds=seconds, threads=1)
    return report.bare.windows_per_s, report.predict.windows_per_s


def agent_windows_per_s(batch: int, seconds: float, warmup: float) -> float:
    with tempfile.TemporaryDirectory(prefix="agent-e2e-") as tmp:
        workdir = Path(tmp)
        config = write_config(workdir, batch=batch)
        db = workdir / "state" / "store.db"
        proc = spawn_agent(config)
        try:
            wait_for(lambda: count_results(db) > 0, timeout=60)
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

    ratios, agents, bares, predicts = [], [], [], []
    for r in range(args.rounds):
        bare_before, predict_before = bare_windows_per_s(args.batch, args.bare_seconds)
        agent = agent_windows_per_s(args.batch, args.seconds, args.warmup)
        bare_after, predict_after = bare_windows_per_s(args.batch, args.bare_seconds)
        bare = (bare_before + bare_after) / 2
        predict = (predict_before + predict_after) / 2
        ratios.append(agent / bare)
        agents.append(agent)
        bares.append(bare)
        predicts.append(predict)
        print(
            f"round {r + 1}: agent {agent:,.0f} windows/s | bare loop {bare:,.0f} "
            f"(before {bare_before:,.0f}, after {bare_after:,.0f}) | Model.predict {predict:,.0f} "
            f"| agent/bare {agent / bare:.3f}x"
        )
    ratio = statistics.median(ratios)
    print()
    print(f"model: {model_file().name}, batch {args.batch}, 1 inference thread")
    figures = {
        "agent end-to-end (replay -> buffer -> batcher -> predict -> SQLite)": statistics.median(agents),
        "bare runtime loop (same batch, same run)": statistics.median(bares),
        "Model.predict alone (same batch, same run)": statistics.median(predicts),
    }
    for what, value in figures.items():
        print(f"{what:<70}{value:>10,.0f} windows/s")
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(f"ratio agent/bare: {ratio:.3f}x (median of {len(ratios)} rounds; target >= {TARGET}: {verdict})")


if __name__ == "__main__":
    main()
