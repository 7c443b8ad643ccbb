"""Cloud-fallback curve on the held-out watch recordings (issue 15).

    python bench/fallback_curve.py [--json] [--quick] [--plot docs/fallback_curve.png]

Each point is a real ``edgefleet agent run`` process replaying the held-out recordings (subjects 9
and 10, one stream per recording) through the shipped int8 edge bundle with ``[fallback]`` at one
policy setting, its unsure windows answered over a local Mosquitto by one ``edgefleet controller
infer`` process serving the cloud bundle; accuracy comes from the agent's stored results
(:mod:`edgefleet.bench.fallback_curve`). Threshold 0 is edge-only, 1 is cloud-only: the baselines,
measured in the same run. Goal: within 1 point of cloud-only accuracy while sending <= 30 % of
windows, at the setting chosen on validation subjects before this run (``fallback_policy`` in
models/demo/watch_metrics.json and ``chosen`` in models/demo/watch_share_validation.json, both added
to the sweep). Besides ``min_confidence`` it sweeps ``min_margin``, ``max_entropy`` and
``target_share`` with each score (:data:`edgefleet.bench.fallback_curve.DEFAULT_SETTINGS`).
``--quick``: a few recordings, three thresholds and one share (what the test runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgefleet.bench.fallback_curve import (
    DEFAULT_SETTINGS,
    QUICK_SETTINGS,
    Setting,
    chosen_share,
    chosen_threshold,
    run_curve,
)

GOAL_SHARE = 0.30
GOAL_POINTS = 0.01


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print only the curve as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="7 recordings; confidence 0, 0.7, 1 and target_share:margin 0.25"
    )
    parser.add_argument("--thresholds", type=float, nargs="+", help="sweep only these min_confidence values")
    parser.add_argument("--plot", type=Path, help="write the curve as a PNG (needs edgefleet[docs])")
    args = parser.parse_args()
    threshold, share = chosen_threshold(), chosen_share()
    chosen: list[Setting] = [] if threshold is None else [("confidence", threshold)]
    chosen += [] if share is None else [share]
    settings: list[Setting]
    if args.thresholds:
        settings = [("confidence", t) for t in args.thresholds]
    else:
        settings = list(QUICK_SETTINGS if args.quick else [*DEFAULT_SETTINGS, *chosen])

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = run_curve(settings, recordings_limit=7 if args.quick else None, progress=progress)
    if args.plot:
        from edgefleet.bench.curve_plot import plot_curve

        plot_curve(result, args.plot, goal_share=GOAL_SHARE, goal_points=GOAL_POINTS, chosen=chosen)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return 0
    print(f"held-out watch windows: {result.windows}; cloud answers past the SLO: {result.timeouts}")
    print(
        f"edge-only accuracy {result.edge_only:.4f}, cloud-only accuracy {result.cloud_only:.4f} (same run)"
    )
    print(
        "policy                   threshold  sent   accuracy  vs cloud-only  "
        "goal (<= 30 % sent, >= cloud-only - 1 pt)"
    )
    for p in result.points:
        gap = p.accuracy - result.cloud_only
        met = p.cloud_share <= GOAL_SHARE and gap >= -GOAL_POINTS - 1e-9
        print(
            f"{p.policy:<24} {p.threshold:9.2f}  {p.cloud_share:5.3f}  {p.accuracy:8.4f}  "
            f"{gap * 100:+8.1f} pt  {'yes' if met else 'no'}"
            + ("  <- chosen on validation subjects 7-8" if (p.policy, p.threshold) in chosen else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
