"""Shared helpers of the agent benchmarks (bench/agent_*.py): configs and the agent process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "models" / "bundles" / "basicmotions-edge-tflite"
REPLAY = ROOT / "models" / "data" / "basicmotions_test_stream.csv"


def model_file(bundle: Path = BUNDLE) -> Path:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return bundle / str(manifest["model"]["path"])


def write_config(
    workdir: Path,
    *,
    batch: int = 64,
    realtime: bool = False,
    loop: bool = True,
    block_size: int = 1000,
    threads: int | None = 1,
    metrics_interval_s: float = 1.0,
    bundle: Path = BUNDLE,
) -> Path:
    state = workdir / "state"
    threads_line = f"threads = {threads}\n" if threads is not None else ""
    text = f"""
[device]
id = "bench"
state_dir = "{state}"

[[sources]]
type = "replay"
name = "imu"
file = "{REPLAY}"
realtime = {str(realtime).lower()}
loop = {str(loop).lower()}
block_size = {block_size}

[model]
bundle = "{bundle}"
{threads_line}
[batching]
max_batch_size = {batch}
batch_timeout_s = 0.01
buffer_capacity = 16384
backpressure = "block"

[store]
path = "{state / "store.db"}"

[sync]
enabled = false

[health]
metrics_interval_s = {metrics_interval_s}

[logging]
format = "text"
level = "WARNING"
"""
    path = workdir / "agent.toml"
    path.write_text(text)
    return path


def spawn_agent(config: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start the agent; its output goes to agent.log beside the config (read it when a run fails)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFLEET_", "NOTIFY_", "WATCHDOG_"))}
    with (config.parent / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "agent", "run", "--config", str(config), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )


def agent_log_tail(config: Path, lines: int = 20) -> str:
    path = config.parent / "agent.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def count_results(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / (1024 * 1024)


def wait_for(condition: object, timeout: float = 60.0, poll: float = 0.005) -> float:
    """Seconds until ``condition()`` holds (perf_counter based); raises on timeout."""
    assert callable(condition)
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(poll)
    return time.perf_counter() - start


def agent_windows_per_s(
    bundle: Path, batch: int, seconds: float, warmup: float, *, extra_config: str = ""
) -> float:
    """Results the real agent commits per second at saturation (replay as fast as it can), read
    from the store between two counts after ``warmup``; ``extra_config`` is appended to the
    config file (e.g. a ``[drift]`` section)."""
    with tempfile.TemporaryDirectory(prefix="agent-e2e-") as tmp:
        workdir = Path(tmp)
        config = write_config(workdir, batch=batch, bundle=bundle)
        if extra_config:
            with config.open("a") as fh:
                fh.write("\n" + extra_config)
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
