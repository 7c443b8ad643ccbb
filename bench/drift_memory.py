"""Agent resident memory over a long run with drift on, beside the same agent with drift off.

    python bench/drift_memory.py [--minutes 60] [--speed 500] [--streams 1] [--every-s 60] [--out FILE.json]

Two real ``edgefleet agent run`` processes on the demo int8 LiteRT bundle run side by side for
the whole run, each replaying the BasicMotions test stream in a loop at ``--speed`` times its
10 Hz (500: 5,000 samples/s, 500 windows/s, a 256-window drift report about every half
second, so an hour closes thousands of reports); only ``[drift] enabled`` differs. Every
``--every-s`` seconds both RSS figures are sampled, with the results and drift reports each
store holds, and the whole series is rewritten to ``--out`` (JSON), so a run cut short still
leaves its samples. The claim checked: drift-on RSS after 10 minutes and at the end differ by
no more than the drift-off agent's own change over the same time (SQLite page cache, allocator).
Meant to run in the background at low priority (``nice -n 10``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from agentbench import REPLAY, agent_log_tail, count_results, rss_mib, spawn_agent, wait_for, write_config
from fixed_load import write_fixed_load_config


def drift_reports(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return -1
    try:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE kind = 'drift'").fetchone()[0])
    except sqlite3.OperationalError:
        return -1
    finally:
        conn.close()


def start(workdir: Path, *, drift: bool, speed: float, streams: int = 1) -> tuple[Path, Path]:
    workdir.mkdir()
    if streams > 1:  # the fixed load's shape: many sensors, one ring group
        config = write_fixed_load_config(workdir, streams, 10.0 * speed, drift=drift)
        return config, workdir / "state" / "store.db"
    config = write_config(workdir, realtime=True, block_size=100)
    text = config.read_text().replace(f'file = "{REPLAY}"', f'file = "{REPLAY}"\nspeed = {speed}')
    config.write_text(text + f"\n[drift]\nenabled = {str(drift).lower()}\n")
    return config, workdir / "state" / "store.db"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=500.0, help="replay speed factor (10 Hz recording)")
    parser.add_argument("--every-s", type=float, default=60.0, help="seconds between two RSS samples")
    parser.add_argument(
        "--streams",
        type=int,
        default=1,
        help="replay streams per agent (more than 1: bench/fixed_load.py's config, each at 10 Hz x --speed)",
    )
    parser.add_argument("--out", type=Path, default=Path("drift_memory.json"))
    args = parser.parse_args()
    series: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="drift-mem-") as tmp:
        sides = {
            n: start(Path(tmp) / n, drift=n == "on", speed=args.speed, streams=args.streams)
            for n in ("on", "off")
        }
        procs = {name: spawn_agent(config) for name, (config, _) in sides.items()}
        try:
            for name, (config, db) in sides.items():
                try:
                    wait_for(lambda db=db: count_results(db) > 0, timeout=120)
                except TimeoutError:
                    raise SystemExit(f"{name}: no result after 120 s:\n{agent_log_tail(config)}") from None
            t0 = time.monotonic()
            while True:
                elapsed = time.monotonic() - t0
                row: dict[str, float] = {"minutes": round(elapsed / 60, 2)}
                for name, (_, db) in sides.items():
                    row[f"rss_{name}_mib"] = round(rss_mib(procs[name].pid), 2)
                    row[f"results_{name}"] = count_results(db)
                row["drift_reports_on"] = drift_reports(sides["on"][1])
                series.append(row)
                args.out.write_text(
                    json.dumps(
                        {
                            "speed": args.speed,
                            "streams": args.streams,
                            "every_s": args.every_s,
                            "series": series,
                        },
                        indent=1,
                    )
                )
                print(json.dumps(row), flush=True)
                if elapsed >= args.minutes * 60:
                    break
                time.sleep(max(0.0, min(args.every_s, args.minutes * 60 - elapsed)))
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        tail = agent_log_tail(sides[name][0])
                        raise SystemExit(f"{name}: agent exited {proc.returncode}:\n{tail}")
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
