"""CPU per window at a realistic fixed load: the agent beside a hand-written loop doing the same work.

    python bench/fixed_load.py [--seconds 20] [--streams 16] [--rate-hz 100] [--agent-checkout DIR]

The load: ``--streams`` replay sources (default 16) of the 6-channel BasicMotions stream played
in real time at ``--rate-hz`` (default 100 Hz), through the demo int8 LiteRT bundle (window 50,
hop 10): 16 x 100 / 10 = 160 windows/s. Both sides keep up; what differs is what it costs.

* agent: the real ``edgefleet agent run`` process, default batching and store settings, every
  result committed to SQLite. CPU = the process's user + system time over the measured
  seconds (after a warm-up), divided by the windows committed in that time.
* hand-written loop, same run: one thread, a 100 ms tick; each tick appends the samples that
  fell due to each stream's window, normalises and quantizes the 16 new windows, runs LiteRT
  directly on one batch, takes the argmax and writes one row per window in one SQLite
  transaction (WAL, synchronous NORMAL), then sleeps to the next tick. CPU = this process's
  time over the same number of seconds.

Goal: agent / hand-written loop <= 1.5 (CPU per window). ``--agent-checkout`` runs the agent
from another checkout of the repository (e.g. a worktree of an older commit) for a
before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from agentbench import BUNDLE, REPLAY, ROOT, agent_log_tail, count_results, model_file, wait_for

GOAL = 1.5
HOP = 10
WINDOW = 50


def write_fixed_load_config(workdir: Path, streams: int, rate_hz: float) -> Path:
    state = workdir / "state"
    sources = "".join(
        f"""
[[sources]]
type = "replay"
name = "imu-{i:02d}"
file = "{REPLAY}"
rate_hz = {rate_hz}
loop = true
"""
        for i in range(streams)
    )
    text = f"""
[device]
id = "bench-fixed-load"
state_dir = "{state}"
{sources}
[model]
bundle = "{BUNDLE}"
threads = 1

[store]
path = "{state / "store.db"}"

[sync]
enabled = false

[logging]
format = "text"
level = "WARNING"
"""
    path = workdir / "agent.toml"
    path.write_text(text)
    return path


def agent_cpu_per_window(
    streams: int, rate_hz: float, seconds: float, checkout: Path
) -> tuple[float, float, int]:
    """(CPU us per window, windows/s committed, threads) of the agent process at the fixed load."""
    with tempfile.TemporaryDirectory(prefix="fixed-load-") as tmp:
        workdir = Path(tmp)
        config = write_fixed_load_config(workdir, streams, rate_hz)
        db = workdir / "state" / "store.db"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("EDGEFLEET_", "NOTIFY_", "WATCHDOG_"))
        }
        env["PYTHONPATH"] = str(checkout)
        with (workdir / "agent.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgefleet", "agent", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=checkout,
            )
        try:
            try:
                wait_for(lambda: count_results(db) > 0, timeout=90, poll=0.1)
            except TimeoutError:
                raise SystemExit(f"no result after 90 s; agent log:\n{agent_log_tail(config)}") from None
            agent = psutil.Process(proc.pid)
            time.sleep(3.0)  # warm-up: every stream has filled its first window and runs at pace
            cpu0, n0, t0 = sum(agent.cpu_times()[:2]), count_results(db), time.perf_counter()
            time.sleep(seconds)
            cpu1, n1, t1 = sum(agent.cpu_times()[:2]), count_results(db), time.perf_counter()
            threads = agent.num_threads()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    windows = n1 - n0
    if windows <= 0:
        raise SystemExit("the agent committed no window while measured")
    return (cpu1 - cpu0) / windows * 1e6, windows / (t1 - t0), threads


def hand_written_cpu_per_window(streams: int, rate_hz: float, seconds: float) -> tuple[float, float]:
    """(CPU us per window, windows/s) of the hand-written loop at the same load."""
    from ai_edge_litert.interpreter import Interpreter

    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    prep = manifest["preprocessing"]
    mean = np.asarray(prep["mean"], np.float32)
    std = np.asarray(prep["std"], np.float32)
    labels = list(manifest["labels"])
    recording = np.loadtxt(REPLAY, delimiter=",", skiprows=1, usecols=range(1, 7), dtype=np.float32)

    interpreter = Interpreter(model_path=str(model_file(BUNDLE)), num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [streams, WINDOW, recording.shape[1]])
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out_detail = interpreter.get_output_details()[0]
    scale, zero = detail["quantization"]
    out_scale, out_zero = out_detail["quantization"]

    tick_s = HOP / rate_hz
    positions = [i * 97 % recording.shape[0] for i in range(streams)]  # streams out of phase
    with tempfile.TemporaryDirectory(prefix="fixed-load-loop-") as tmp:
        conn = sqlite3.connect(str(Path(tmp) / "loop.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE results (id INTEGER PRIMARY KEY, stream TEXT, window_start REAL, "
            "window_end REAL, label TEXT, score REAL, created_at REAL)"
        )
        windows = np.empty((streams, WINDOW, recording.shape[1]), np.float32)
        done = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        next_tick = t0
        while time.perf_counter() - t0 < seconds:
            now = time.time()
            for s in range(streams):
                index = (positions[s] + np.arange(WINDOW)) % recording.shape[0]
                windows[s] = recording[index]
                positions[s] = (positions[s] + HOP) % recording.shape[0]
            quantized = np.clip(np.rint((windows - mean) / std / scale) + zero, -128, 127).astype(np.int8)
            interpreter.set_tensor(detail["index"], quantized)
            interpreter.invoke()
            scores = (interpreter.get_tensor(out_detail["index"]).astype(np.float32) - out_zero) * out_scale
            best = scores.argmax(axis=1)
            rows = [
                (f"imu-{s:02d}", now - WINDOW / rate_hz, now, labels[int(b)], float(scores[s, b]), now)
                for s, b in enumerate(best)
            ]
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO results (stream, window_start, window_end, label, score, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
            done += streams
            next_tick += tick_s
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
        conn.close()
    return cpu / done * 1e6, done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per side")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--rate-hz", type=float, default=100.0)
    parser.add_argument("--agent-checkout", type=Path, default=ROOT, help="run the agent from this checkout")
    args = parser.parse_args()
    offered = args.streams * args.rate_hz / HOP
    print(
        f"fixed load: {args.streams} streams x 6 channels at {args.rate_hz:g} Hz, hop {HOP} "
        f"= {offered:g} windows/s offered; demo int8 LiteRT model, 1 thread"
    )
    loop_us, loop_rate = hand_written_cpu_per_window(args.streams, args.rate_hz, args.seconds)
    agent_us, agent_rate, threads = agent_cpu_per_window(
        args.streams, args.rate_hz, args.seconds, args.agent_checkout.resolve()
    )
    print(f"  {'':22} {'CPU us/window':>14} {'windows/s':>10} {'% of a core':>12}")
    print(f"  {'hand-written loop':22} {loop_us:14.0f} {loop_rate:10.1f} {loop_us * loop_rate / 1e4:11.1f}%")
    print(f"  {'agent':22} {agent_us:14.0f} {agent_rate:10.1f} {agent_us * agent_rate / 1e4:11.1f}%")
    ratio = agent_us / loop_us
    verdict = "meets" if ratio <= GOAL else "misses"
    print(f"  agent / loop CPU per window = {ratio:.2f}x ({verdict} the goal <= {GOAL}x)")
    print(f"  agent threads: {threads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
