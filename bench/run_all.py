"""Run every benchmark in bench/ one after the other (``make bench``).

Each benchmark prints its own figures beside a baseline measured in the same run, as ratios;
the three a device owner cares about are ``model_path`` (real-work models, goal >= 0.95x the bare
loop), ``fixed_load`` (CPU per window at 16 streams x 100 Hz beside a hand-written loop, goal
<= 1.5x) and ``saturation`` (the tiny model's fixed cost per window and the agent's ceiling).
this runner only sequences them so they never compete for the CPU. Pass ``--only NAME`` to run
a subset, e.g. ``python bench/run_all.py --only ring_buffer store_writer``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# Ordered from the bottom of the stack up: runtime, agent, sync, controller.
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("ring_buffer", []),
    ("thread_handoff", []),
    ("demo_models", []),
    ("model_predict", []),
    ("model_path", []),
    ("store_writer", []),
    ("store_stats", []),
    ("fixed_load", []),
    ("fixed_load_stages", []),
    ("saturation", []),
    ("agent_e2e", []),
    ("agent_memory", []),
    ("agent_startup", []),
    ("ota_swap", []),
    ("sync_drain", []),
    ("ota_transfer", []),
    ("ota_campaign", []),
    ("flash_wear", []),
    ("controller_ingest", []),
    ("cloud_inference", []),
    ("fallback_curve", []),
    ("dashboard_overview", []),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    args = parser.parse_args()
    failed = []
    for name, extra in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        script = BENCH / f"{name}.py"
        if not script.exists():
            print(f"== {name}: missing, skipped", flush=True)
            continue
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script), *extra], check=False)
        print(f"== {name}: exit {result.returncode} after {time.monotonic() - started:.0f} s", flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
