"""OTA activation on a running agent: install-to-active time, and the service gap during the swap.

    python bench/ota_swap.py [--rounds 3] [--speed 10]

Each round starts ``edgefleet agent run`` on a signed copy of the demo bundle (1.0.0), a replay
source in real time (``--speed`` x the recording's 10 Hz, looping), then runs
``edgefleet ota install`` with 1.1.0 (same model, new version, signed). It reports:

* install to active: from the ``received`` state to ``probation`` (verify, validation in its own
  process, slot write, swap), from the states' timestamps in the progress file; no transfer
  (the MQTT download is not part of this measurement);
* the service gap: the longest interval between consecutive stored batches (distinct
  ``created_at``) within 2 s of the first 1.1.0 result, beside the steady-state interval (the
  median interval before the install started), same run, as a ratio. Goal: <= 2x.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path

from agentbench import BUNDLE, ROOT, agent_log_tail, count_results, spawn_agent, wait_for, write_config

GOAL_RATIO = 2.0


def make_versions(workdir: Path) -> tuple[Path, Path, Path]:
    sys.path.insert(0, str(ROOT))
    from edgefleet.runtime.bundle_signing import generate_keys, sign_bundle

    private, public = generate_keys(workdir / "keys")
    made = []
    for version in ("1.0.0", "1.1.0"):
        dest = workdir / f"v{version}"
        shutil.copytree(BUNDLE, dest)
        (dest / "manifest.sig").unlink(missing_ok=True)
        manifest = json.loads((dest / "manifest.json").read_text())
        manifest["version"] = version
        (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        sign_bundle(dest, private)
        made.append(dest)
    return made[0], made[1], public


def batch_times(db: Path) -> list[tuple[float, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT created_at, min(model_version) FROM results GROUP BY created_at ORDER BY created_at"
        ).fetchall()
    finally:
        conn.close()
    return [(float(t), str(v)) for t, v in rows]


def one_round(speed: float) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="edgefleet-ota-bench-") as tmp:
        workdir = Path(tmp)
        v1, v2, public = make_versions(workdir)
        config = write_config(workdir, batch=16, realtime=True, loop=True, block_size=1, bundle=v1)
        text = config.read_text().replace("block_size = 1\n", f"block_size = 1\nspeed = {speed}\n")
        text += f'\n[ota]\ntrusted_keys = ["{public}"]\nprobation_s = 2.0\nprobation_min_windows = 10\n'
        config.write_text(text)
        db = workdir / "state" / "store.db"
        agent = spawn_agent(config)
        try:
            wait_for(lambda: count_results(db) >= 100, timeout=120, poll=0.05)
            before = batch_times(db)
            install = subprocess.run(
                [sys.executable, "-m", "edgefleet", "ota", "install", str(v2), "--config", str(config)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=300,
                check=False,
            )
            if install.returncode != 0:
                raise SystemExit(
                    f"install failed:\n{install.stdout}{install.stderr}\n{agent_log_tail(config)}"
                )
            request = install.stdout.split()[1].rstrip(":")
            progress = json.loads((workdir / "state" / "ota" / "progress" / f"{request}.json").read_text())
            at = {s["state"]: s["at"] for s in progress["states"]}
            to_active = at["probation"] - at["received"]
            wait_for(lambda: sum(v == "1.1.0" for _, v in batch_times(db)) >= 50, timeout=120, poll=0.05)
        finally:
            agent.terminate()
            agent.wait(60)
        times = batch_times(db)
    steady = statistics.median(b[0] - a[0] for a, b in pairwise(before))
    first_new = next(t for t, v in times if v == "1.1.0")
    around = [t for t, _ in times if first_new - 2.0 <= t <= first_new + 2.0]
    gap = max(b - a for a, b in pairwise(around))
    return to_active, gap, steady


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speed", type=float, default=10.0, help="replay speed (x 10 Hz)")
    args = parser.parse_args()
    results = [one_round(args.speed) for _ in range(args.rounds)]
    print(f"{'round':>5} {'install->active s':>18} {'swap gap ms':>12} {'steady ms':>10} {'gap/steady':>11}")
    for i, (active, gap, steady) in enumerate(results, 1):
        print(f"{i:>5} {active:>18.2f} {gap * 1000:>12.1f} {steady * 1000:>10.1f} {gap / steady:>10.2f}x")
    worst = max(gap / steady for _, gap, steady in results)
    verdict = "met" if worst <= GOAL_RATIO else "NOT met"
    print(f"worst gap/steady {worst:.2f}x (goal <= {GOAL_RATIO:g}x): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
