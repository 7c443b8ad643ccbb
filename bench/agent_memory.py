"""Agent resident memory beside a bare Python process holding the same model, as a difference.

    python bench/agent_memory.py [--seconds 6] [--rounds 3]

Agent: the real ``edgefleet agent run`` on the demo int8 LiteRT bundle, replaying the
BasicMotions test stream in a loop as fast as possible into its SQLite store, health metrics
every second; its RSS is sampled while it runs and the peak is reported.

Baseline, same run: ``python -c`` importing ``edgefleet.runtime``, loading the same model
file with ``load_model`` and running batches of the same size; its peak RSS likewise.
Target: agent RSS - baseline RSS <= 40 MiB.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from agentbench import ROOT, count_results, model_file, rss_mib, spawn_agent, wait_for, write_config

TARGET_MIB = 40.0

BARE = """
import sys, time
import numpy as np
from edgefleet.runtime import load_model
model = load_model(sys.argv[1], threads=1)
batch = np.random.default_rng(0).standard_normal((int(sys.argv[2]), 50, 6)).astype(np.float32)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    model.predict(batch)
"""


def peak_rss(pid: int, seconds: float) -> float:
    peak = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            peak = max(peak, rss_mib(pid))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    return peak


def bare_peak(batch: int, seconds: float) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE, str(model_file()), str(batch), str(seconds + 5)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready": the model is loaded
        return peak_rss(proc.pid, seconds)
    finally:
        proc.kill()
        proc.wait()


def agent_peak(batch: int, seconds: float) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="agent-mem-") as tmp:
        workdir = Path(tmp)
        config = write_config(workdir, batch=batch)
        db = workdir / "state" / "store.db"
        proc = spawn_agent(config)
        try:
            wait_for(lambda: count_results(db) > 0, timeout=60)
            peak = peak_rss(proc.pid, seconds)
            stored = count_results(db)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        return peak, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    agents, bares = [], []
    for r in range(args.rounds):
        bare = bare_peak(args.batch, args.seconds / 2)
        agent, stored = agent_peak(args.batch, args.seconds)
        agents.append(agent)
        bares.append(bare)
        print(
            f"round {r + 1}: agent peak RSS {agent:.1f} MiB ({stored} results stored) | "
            f"bare process {bare:.1f} MiB | +{agent - bare:.1f} MiB ({agent / bare:.2f}x)"
        )
    agent, bare = statistics.median(agents), statistics.median(bares)
    extra = agent - bare
    verdict = "ok" if extra <= TARGET_MIB else "ABOVE TARGET"
    print()
    print(f"model: {model_file().name}, batch {args.batch}")
    print(f"agent (sources, buffers, batcher, model, SQLite store, health): {agent:.1f} MiB RSS")
    print(f"bare python + edgefleet.runtime + same model:                  {bare:.1f} MiB RSS")
    print(f"difference: +{extra:.1f} MiB, ratio {agent / bare:.2f}x")
    print(f"target <= +{TARGET_MIB:.0f} MiB: {verdict}")


if __name__ == "__main__":
    main()
