"""Agent start-up to first stored result, beside a bare process's start-up to first prediction.

    python bench/agent_startup.py [--rounds 5]

Agent: wall time from spawning ``edgefleet agent run`` (demo int8 LiteRT bundle, replay
source as fast as possible, empty state directory) until the first result is committed to
its SQLite store, seen by polling the store from this process.

Baseline, same run: wall time from spawning ``python -c`` that imports ``edgefleet.runtime``,
loads the same model and prints one prediction, until that line arrives.
Target: agent <= 2 s.
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
from agentbench import ROOT, count_results, model_file, spawn_agent, wait_for, write_config

TARGET_S = 2.0

BARE = """
import sys
import numpy as np
from edgefleet.runtime import load_model
model = load_model(sys.argv[1], threads=1)
print(model.predict(np.zeros((1, 50, 6), np.float32)), flush=True)
"""


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def bare_startup() -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE + "\nimport sys; sys.stdin.readline()\n", str(model_file())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    proc.stdout.readline()
    elapsed = time.perf_counter() - start
    cpu = _cpu_s(proc.pid)
    proc.stdin.close()
    proc.wait(30)
    return elapsed, cpu


def agent_startup() -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="agent-start-") as tmp:
        workdir = Path(tmp)
        config = write_config(workdir, batch=16)
        db = workdir / "state" / "store.db"
        start = time.perf_counter()
        proc = spawn_agent(config)
        try:
            wait_for(lambda: count_results(db) > 0, timeout=60, poll=0.002)
            elapsed = time.perf_counter() - start
            cpu = _cpu_s(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    agents, bares, agent_cpus, bare_cpus = [], [], [], []
    for r in range(args.rounds):
        bare, bare_cpu = bare_startup()
        agent, agent_cpu = agent_startup()
        bares.append(bare)
        agents.append(agent)
        bare_cpus.append(bare_cpu)
        agent_cpus.append(agent_cpu)
        print(
            f"round {r + 1}: agent first stored result {agent:.3f} s (cpu {agent_cpu:.2f} s) | "
            f"bare first prediction {bare:.3f} s (cpu {bare_cpu:.2f} s)"
        )
    agent, bare = statistics.median(agents), statistics.median(bares)
    agent_cpu, bare_cpu = statistics.median(agent_cpus), statistics.median(bare_cpus)
    verdict = "ok" if agent <= TARGET_S else "ABOVE TARGET"
    print()
    label = f"agent start-up to first stored result (median of {args.rounds}):"
    print(f"{label} {agent:.3f} s wall, {agent_cpu:.2f} s cpu")
    print(f"bare import + load + first prediction (same run):        {bare:.3f} s wall, {bare_cpu:.2f} s cpu")
    print(f"ratio agent/bare: {agent / bare:.2f}x wall, {agent_cpu / bare_cpu:.2f}x cpu")
    print(f"agent target <= {TARGET_S:.1f} s wall: {verdict}")


if __name__ == "__main__":
    main()
