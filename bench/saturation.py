"""Saturation: the tiny demo model's path/bare ratio at hop 10 and hop 50, and the agent's ceiling.

    python bench/saturation.py [--seconds 3] [--agent-seconds 8] [--batch 32]

The demo int8 LiteRT model takes about two microseconds per window, so here the figures measure
edgefleet's fixed cost per window, not the model: they are reported, with the overhead in
microseconds per window, and carry no pass/fail.

* path / bare at hop 10 and hop 50: :func:`edgefleet.bench.run_benchmark` (``edgefleet model
  bench``): the bare LiteRT loop beside edgefleet's path as the agent runs it (a producer thread
  pushing 64-sample blocks -> StreamBuffer -> Batcher -> Model.predict), same run. Hop 10 pushes
  10 samples per window, hop 50 pushes 50.
* the agent's maximum sustained windows/s: the real ``edgefleet agent run`` process replaying the
  BasicMotions stream as fast as it can (``realtime = false``, ``backpressure = "block"``), every
  result committed to SQLite, beside the bare loop measured just before and just after it
  (``bench/agent_e2e.py`` has the longer, multi-round version).
"""

from __future__ import annotations

import argparse

from agent_e2e import bare_windows_per_s
from agentbench import BUNDLE, agent_windows_per_s, model_file

from edgefleet.bench import run_benchmark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per path of the model bench")
    parser.add_argument("--agent-seconds", type=float, default=8.0, help="agent measurement")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    model = model_file(BUNDLE)
    print(f"tiny model: {model.name}, batch {args.batch}, 1 runtime thread")
    print(f"  {'':34}{'bare w/s':>12}{'path w/s':>12}{'path/bare':>11}{'overhead us/w':>15}")
    for hop in (10, 50):
        report = run_benchmark(model, batch=args.batch, seconds=args.seconds, threads=1, hop=hop)
        ours = report.edgefleet
        assert ours is not None  # a windowed model
        overhead = 1e6 / ours.windows_per_s - 1e6 / report.bare.windows_per_s
        print(
            f"  {'model path, hop ' + str(hop):<34}{report.bare.windows_per_s:>12,.0f}"
            f"{ours.windows_per_s:>12,.0f}{report.ratio:>10.3f}x{overhead:>15.1f}"
        )
    before = bare_windows_per_s(BUNDLE, args.batch, 2.0)[0]
    agent = agent_windows_per_s(BUNDLE, args.batch, args.agent_seconds, 2.0)
    after = bare_windows_per_s(BUNDLE, args.batch, 2.0)[0]
    bare = (before + after) / 2
    overhead = 1e6 / agent - 1e6 / bare
    print(
        f"  {'agent, max sustained (to SQLite)':<34}{bare:>12,.0f}{agent:>12,.0f}{agent / bare:>10.3f}x"
        f"{overhead:>15.1f}"
    )
    print("  (no pass/fail: on a model this small the figures are edgefleet's fixed cost per window)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
