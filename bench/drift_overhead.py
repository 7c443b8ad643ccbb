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

Second part, in process: the CPU one batch costs the monitor (``DriftMonitor.add_windows`` on
64 windows of the test stream, hop 10, outputs included; and closing a report) beside
``Model.predict`` on the same batch, same run. At a fixed load of R windows/s drift costs
R x (its per-window time) of CPU whatever the budget, so this ratio is drift's CPU share at any
load below the budget.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from agentbench import BUNDLE, REPLAY, agent_windows_per_s

from edgefleet.agent.drift_monitor import DriftMonitor, DriftSettings
from edgefleet.runtime.bundle import load_bundle

TARGET = 0.97


def drift_windows_per_s(*, drift: bool, batch: int, windows: int, seconds: float, warmup: float) -> float:
    section = f"[drift]\nenabled = {str(drift).lower()}\nwindows = {windows}\n"
    return agent_windows_per_s(BUNDLE, batch, seconds, warmup, extra_config=section)


def per_window_costs(batch: int, seconds: float) -> tuple[float, float, float]:
    """Microseconds per window: drift counting, Model.predict; and microseconds per report close."""
    bundle = load_bundle(BUNDLE)
    assert bundle.manifest.reference is not None
    prep = bundle.manifest.preprocessing
    samples = np.loadtxt(
        REPLAY, delimiter=",", skiprows=1, usecols=range(1, 1 + prep.channels), dtype=np.float32
    )
    windows = np.lib.stride_tricks.sliding_window_view(samples, (prep.window_length, prep.channels))
    data = np.ascontiguousarray(windows[:: prep.hop, 0][:batch])
    starts = np.arange(batch, dtype=np.int64) * prep.hop
    labels = [bundle.manifest.labels[0]] * batch
    scores = [0.9] * batch
    monitor = DriftMonitor(
        bundle.manifest.reference,
        window_length=prep.window_length,
        labels=bundle.manifest.labels,
        settings=DriftSettings(windows=10**12),
    )

    def timed(step: object) -> float:
        assert callable(step)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step(n)
            n += 1
        return (time.perf_counter() - start) / n

    stride = int(starts[-1]) + prep.window_length
    drift_s = timed(
        lambda n: monitor.add_windows("s", starts + n * stride, data, labels=labels, scores=scores)
    )
    close_s = timed(lambda n: monitor._close())
    model = bundle.open_model()
    try:
        model.set_input_normalization(prep.mean, prep.std)
        predict_s = timed(lambda n: model.predict(data))
    finally:
        model.close()
    return drift_s / batch * 1e6, predict_s / batch * 1e6, close_s * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per side per round")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--windows", type=int, default=256, help="[drift] windows: report size")
    parser.add_argument("--skip-agent", action="store_true", help="only the in-process per-window costs")
    args = parser.parse_args()
    drift_us, predict_us, close_us = per_window_costs(args.batch, min(args.seconds, 3.0))
    print(
        f"in process, batch {args.batch}: drift {drift_us:.2f} us/window, Model.predict {predict_us:.2f} "
        f"us/window (drift/predict {drift_us / predict_us:.2f}x); closing a report {close_us:.0f} us"
    )
    if args.skip_agent:
        return
    ratios = []
    print(f"bundle {BUNDLE.name}, batch {args.batch}, drift report every {args.windows} windows")
    print(f"{'round':>5} {'off w/s':>10} {'on w/s':>10} {'on/off':>7}")
    for r in range(args.rounds):
        off = drift_windows_per_s(
            drift=False, batch=args.batch, windows=args.windows, seconds=args.seconds, warmup=args.warmup
        )
        on = drift_windows_per_s(
            drift=True, batch=args.batch, windows=args.windows, seconds=args.seconds, warmup=args.warmup
        )
        ratios.append(on / off)
        print(f"{r:>5} {off:>10.0f} {on:>10.0f} {on / off:>7.3f}")
    median = statistics.median(ratios)
    verdict = "meets" if median >= TARGET else "MISSES"
    spread = f"min {min(ratios):.3f}, max {max(ratios):.3f}"
    print(f"median on/off {median:.3f} ({verdict} the {TARGET} target; {spread})")


if __name__ == "__main__":
    main()
