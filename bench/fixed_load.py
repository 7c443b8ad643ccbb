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

The agent runs twice: with ``[drift] enabled = false`` (the same work as the loop: inference and
the store) and with the defaults, which add drift monitoring (on by default; the loop does none).
Each run also prints the CPU per window of each agent thread (from ``/proc``; named when py-spy
is installed, e.g. ``pip install py-spy``).

Goal: agent (same work) / hand-written loop <= 1.5 (CPU per window). ``--agent-checkout`` runs the agent
from another checkout of the repository (e.g. a worktree of an older commit) for a
before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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


def write_fixed_load_config(workdir: Path, streams: int, rate_hz: float, *, drift: bool = True) -> Path:
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
    if not drift:
        text += "\n[drift]\nenabled = false\n"
    path = workdir / "agent.toml"
    path.write_text(text)
    return path


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``, from /proc."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue  # the thread ended
        fields = stat.rsplit(")", 1)[1].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by native id, from ``py-spy dump`` when it is installed (else empty)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).is_file():
        return {}
    try:
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {}
    for match in re.finditer(r'^Thread (0x[0-9A-Fa-f]+|\d+) \([^)]*\): "([^"]+)"', dump.stdout, re.M):
        raw = match.group(1)
        names[int(raw, 16) if raw.startswith("0x") else int(raw)] = match.group(2)
    return names


def agent_cpu_per_window(
    streams: int, rate_hz: float, seconds: float, checkout: Path, *, drift: bool = True
) -> tuple[float, float, int, dict[str, float]]:
    """(CPU us per window, windows/s committed, threads, CPU us per window by thread) of the agent
    process at the fixed load; threads are named when py-spy is installed."""
    with tempfile.TemporaryDirectory(prefix="fixed-load-") as tmp:
        workdir = Path(tmp)
        config = write_fixed_load_config(workdir, streams, rate_hz, drift=drift)
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
            names = thread_names(proc.pid)
            by_thread0 = thread_cpu(proc.pid)
            cpu0, wall0, t0 = sum(agent.cpu_times()[:2]), time.time(), time.perf_counter()
            time.sleep(seconds)
            cpu1, wall1, t1 = sum(agent.cpu_times()[:2]), time.time(), time.perf_counter()
            by_thread1 = thread_cpu(proc.pid)
            threads = agent.num_threads()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        # Windows whose last sample was stamped while measured (replay stamps follow the wall
        # clock), counted once the agent has committed everything: the store's count moves in
        # whole transactions (256 results), too coarse for a 15-s window.
        windows = windows_ended_between(db, wall0, wall1)
    if windows <= 0:
        raise SystemExit("the agent committed no window while measured")
    split: dict[str, float] = {}
    for tid, cpu in by_thread1.items():
        name = names.get(tid, f"thread {tid}")
        split[name] = split.get(name, 0.0) + (cpu - by_thread0.get(tid, 0.0)) / windows * 1e6
    return (cpu1 - cpu0) / windows * 1e6, windows / (t1 - t0), threads, split


def windows_ended_between(db: Path, start: float, end: float) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(
            "SELECT count(*) FROM results WHERE window_end >= ? AND window_end < ?", (start, end)
        ).fetchone()
    finally:
        conn.close()
    return int(row[0])


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
    checkout = args.agent_checkout.resolve()
    runs = [("agent, drift off", False), ("agent, defaults", True)]
    results = [
        (label, *agent_cpu_per_window(args.streams, args.rate_hz, args.seconds, checkout, drift=d))
        for label, d in runs
    ]
    print(f"  {'':22} {'CPU us/window':>14} {'windows/s':>10} {'% of a core':>12} {'/ loop':>7}")
    print(f"  {'hand-written loop':22} {loop_us:14.0f} {loop_rate:10.1f} {loop_us * loop_rate / 1e4:11.1f}%")
    for label, us, rate, _, _ in results:
        print(f"  {label:22} {us:14.0f} {rate:10.1f} {us * rate / 1e4:11.1f}% {us / loop_us:6.2f}x")
    ratio = results[0][1] / loop_us
    verdict = "meets" if ratio <= GOAL else "misses"
    print(
        f"  goal, same work as the loop (inference + store, no drift monitoring): agent / loop = "
        f"{ratio:.2f}x ({verdict} <= {GOAL}x)"
    )
    print(f"  drift monitoring (on by default) adds {results[1][1] - results[0][1]:.0f} us per window")
    for label, _, _, threads, split in results:
        parts = ", ".join(
            f"{name} {us:.0f}" for name, us in sorted(split.items(), key=lambda kv: -kv[1]) if us >= 0.5
        )
        print(f"  {label}: {threads} threads; CPU us/window by thread: {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
