"""Agent throughput with drift monitoring on vs off, same run, as a ratio.

    python bench/drift_overhead.py [--seconds 8] [--rounds 3] [--batch 64] [--windows 256]

Both sides are the real ``edgefleet agent run`` process on the demo int8 LiteRT bundle with a
replay source looping the BasicMotions test stream as fast as possible (``realtime = false``,
``backpressure = "block"``: saturation, nothing dropped), every result committed to SQLite;
only ``[drift] enabled`` differs. Throughput = results committed per second between two
reads of the store after a warm-up. Rounds alternate off/on so drift in the machine's load
hits both sides alike; the figure is the median of the per-round ratios. ``--windows`` is the
report size: at saturation a report closes every ``windows`` windows (thousands per second),
far more often than at any real sample rate, so this is the monitor's worst case.
Target: on / off >= 0.97.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path

from agentbench import BUNDLE, agent_log_tail, count_results, spawn_agent, wait_for, write_config

TARGET = 0.97


def agent_windows_per_s(*, drift: bool, batch: int, windows: int, seconds: float, warmup: float) -> float:
    with tempfile.TemporaryDirectory(prefix="edgefleet-drift-bench-") as tmp:
        workdir = Path(tmp)
        config = write_config(workdir, batch=batch, bundle=BUNDLE)
        with config.open("a") as fh:
            fh.write(f"\n[drift]\nenabled = {str(drift).lower()}\nwindows = {windows}\n")
        db = workdir / "state" / "store.db"
        proc = spawn_agent(config)
        try:
            try:
                wait_for(lambda: count_results(db) > 0, timeout=60)
            except TimeoutError:
                raise SystemExit(f"the agent produced no result:\n{agent_log_tail(config)}") from None
            time.sleep(warmup)
            n0, t0 = count_results(db), time.perf_counter()
            time.sleep(seconds)
            n1, t1 = count_results(db), time.perf_counter()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
        return (n1 - n0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per side per round")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--windows", type=int, default=256, help="[drift] windows: report size")
    args = parser.parse_args()
    ratios = []
    print(f"bundle {BUNDLE.name}, batch {args.batch}, drift report every {args.windows} windows")
    print(f"{'round':>5} {'off w/s':>10} {'on w/s':>10} {'on/off':>7}")
    for r in range(args.rounds):
        off = agent_windows_per_s(
            drift=False, batch=args.batch, windows=args.windows, seconds=args.seconds, warmup=args.warmup
        )
        on = agent_windows_per_s(
            drift=True, batch=args.batch, windows=args.windows, seconds=args.seconds, warmup=args.warmup
        )
        ratios.append(on / off)
        print(f"{r:>5} {off:>10.0f} {on:>10.0f} {on / off:>7.3f}")
    median = statistics.median(ratios)
    verdict = "meets" if median >= TARGET else "MISSES"
    print(f"median on/off {median:.3f} ({verdict} the {TARGET} target; min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
