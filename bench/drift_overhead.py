"""Agent throughput with drift monitoring on vs off, same run, as a ratio.

    python bench/drift_overhead.py [--seconds 8] [--rounds 3] [--batch 64] [--windows 256]
        [--fixed-rounds 3] [--fixed-seconds 125] [--fixed-min-interval-s S] [--fixed-no-sample]
        [--skip-agent] [--skip-fixed]

Both sides are the real ``edgefleet agent run`` process on the demo int8 LiteRT bundle with a
replay source looping the BasicMotions test stream as fast as possible (``realtime = false``,
``backpressure = "block"``: saturation, nothing dropped), every result committed to SQLite;
only ``[drift] enabled`` differs. Throughput = results committed per second between two
reads of the store after a warm-up. Rounds alternate off/on so drift in the machine's load
hits both sides alike; the figure is the median of the per-round ratios. ``--windows`` is the
report size: at saturation a report closes every ``windows`` windows (thousands per second),
far more often than at any real sample rate, so this is the monitor's worst case.
Target: on / off >= 0.97.

Second part, CPU at a realistic fixed load: the load of ``bench/fixed_load.py`` (16 replay
streams x 6 channels at 100 Hz, hop 10: 160 windows/s, every one committed to SQLite), two real
agents, ``[drift]`` on (defaults) and off, running **side by side** over the same measured
seconds (the one started first alternating by round): on a shared machine the CPU time of the
same work moves by tens of per cent from one minute to the next, far more than the few per cent
measured, and side by side both see the same neighbours. Both keep up, so the windows are the
same and the figure is each agent's CPU time (``/proc/PID/task/*/schedstat``, nanoseconds, not
10-ms ticks) over the measured seconds, as a share of one core; the ratio on / off per round,
median and spread, with the load average. The drift side's reports are read back from its
store: how many closed and how many windows sampling left out (``skipped``). The measured
seconds (125 by default) hold two report closes at the default ``min_interval_s`` of 60 s, so
the figure is the steady state, closes included. Goal: within 3 %.

``--side-by-side`` runs the saturation rounds with both agents at once instead, and reports each
one's results per CPU-second (what a window costs, whatever share of the cores each got) beside
its results per second: one after the other, 8 s each, rounds spread over ±20 %.

Third part, in process: the CPU one batch costs the monitor (``DriftMonitor.add_windows`` on
64 windows of the test stream, hop 10, outputs included; and closing a report) beside
``Model.predict`` on the same batch, same run. At a fixed load of R windows/s drift costs
R x (its per-window time) of CPU whatever the budget, so this ratio is drift's CPU share at any
load below the budget.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from agentbench import (
    BUNDLE,
    REPLAY,
    agent_log_tail,
    agent_windows_per_s,
    count_results,
    spawn_agent,
    wait_for,
    write_config,
)
from fixed_load import thread_cpu, write_fixed_load_config

from edgefleet.agent.drift_monitor import DriftMonitor, DriftSettings
from edgefleet.runtime.bundle import load_bundle

TARGET = 0.97
FIXED_TARGET = 1.03


def drift_windows_per_s(*, drift: bool, batch: int, windows: int, seconds: float, warmup: float) -> float:
    section = f"[drift]\nenabled = {str(drift).lower()}\nwindows = {windows}\n"
    return agent_windows_per_s(BUNDLE, batch, seconds, warmup, extra_config=section)


def process_cpu_s(pid: int) -> float:
    """CPU seconds the threads of ``pid`` have run, to the nanosecond (``/proc/PID/task/*/schedstat``).

    ``cpu_times()`` comes in 10 ms clock ticks: at 2 % of a core over 20 s that is 40 ticks, so
    its rounding alone is a few per cent, the size of the effect measured here. The agent's
    threads all live as long as the run, so summing the live ones misses nothing."""
    return sum(thread_cpu(pid).values())


def _fixed_load_config(
    workdir: Path,
    *,
    drift: bool,
    max_cpu: float | None,
    windows: int | None,
    min_interval_s: float | None = None,
    sample: bool | None = None,
) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_fixed_load_config(workdir, 16, 100.0)
    with config.open("a") as fh:
        fh.write(f"\n[drift]\nenabled = {str(drift).lower()}\n")
        if max_cpu is not None:
            fh.write(f"max_cpu = {max_cpu}\n")
        if windows is not None:
            fh.write(f"windows = {windows}\n")
        if min_interval_s is not None:
            fh.write(f"min_interval_s = {min_interval_s}\n")
        if sample is not None:
            fh.write(f"sample = {str(sample).lower()}\n")
    return config


def _drift_reports(db: Path) -> tuple[int, int]:
    """(Drift reports stored, windows they say were skipped)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT count(*), coalesce(sum(json_extract(payload, '$.skipped_windows')), 0) "
            "FROM outbox WHERE kind = 'drift'"
        ).fetchone()
    finally:
        conn.close()
    return int(rows[0]), int(rows[1])


def _side_by_side(
    configs: dict[bool, Path], *, warmup: float, seconds: float
) -> dict[bool, tuple[int, float, float]]:
    """Start the agents of ``configs`` (drift on/off, in its order), wait for each one's first
    result and ``warmup`` seconds more, then measure ``seconds``: per side the results committed,
    the CPU seconds and the wall seconds elapsed, all over the same seconds."""
    sides = list(configs)
    dbs = {drift: configs[drift].parent / "state" / "store.db" for drift in sides}
    procs = {}
    try:
        for drift in sides:
            procs[drift] = spawn_agent(configs[drift])
        for drift in sides:
            try:
                wait_for(lambda db=dbs[drift]: count_results(db) > 0, timeout=90, poll=0.1)
            except TimeoutError:
                raise SystemExit(
                    f"no result after 90 s; agent log:\n{agent_log_tail(configs[drift])}"
                ) from None
        time.sleep(warmup)
        n0 = {d: count_results(dbs[d]) for d in sides}
        c0 = {d: process_cpu_s(procs[d].pid) for d in sides}
        t0 = time.perf_counter()
        time.sleep(seconds)
        n1 = {d: count_results(dbs[d]) for d in sides}
        c1 = {d: process_cpu_s(procs[d].pid) for d in sides}
        t1 = time.perf_counter()
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(60)
    return {d: (n1[d] - n0[d], c1[d] - c0[d], t1 - t0) for d in sides}


def fixed_load_pair(
    *,
    seconds: float,
    on_first: bool,
    max_cpu: float | None = None,
    windows: int | None = None,
    min_interval_s: float | None = None,
    sample: bool | None = None,
) -> tuple[float, float, int, int]:
    """(Share of one core of the drift-off agent, of the drift-on agent, drift reports, skipped
    windows) at the fixed load, both agents running side by side over the same seconds.

    Side by side, not one after the other: on this shared machine the CPU time of the same work
    moves by tens of per cent from one minute to the next with the neighbours' load (caches,
    preemption), far more than the few per cent measured; measured over the same seconds both
    sides see the same neighbours. Each agent is about 2 % of a core, so they barely meet."""
    with tempfile.TemporaryDirectory(prefix="drift-fixed-") as tmp:
        sides = (True, False) if on_first else (False, True)
        configs = {
            drift: _fixed_load_config(
                Path(tmp) / ("on" if drift else "off"),
                drift=drift,
                max_cpu=max_cpu,
                windows=windows,
                min_interval_s=min_interval_s,
                sample=sample,
            )
            for drift in sides
        }
        # warm-up: every stream has filled its first window and runs at pace
        got = _side_by_side(configs, warmup=3.0, seconds=seconds)
        reports, skipped = _drift_reports(configs[True].parent / "state" / "store.db")
        if not reports:
            raise SystemExit("drift was on but no drift report was stored")
        share = {drift: cpu / elapsed for drift, (_, cpu, elapsed) in got.items()}
        return share[False], share[True], reports, skipped


def saturation_pair(
    *, batch: int, windows: int, seconds: float, warmup: float, on_first: bool, a_a: bool = False
) -> dict[str, float]:
    """Both agents at saturation at once (drift on and off), each replaying as fast as it can:
    results per second and results per CPU-second of each over the same seconds. Per CPU-second
    is the figure that does not depend on how the two cores were shared between them. ``a_a``:
    the "on" side runs with drift off too (the method's own spread and bias)."""
    with tempfile.TemporaryDirectory(prefix="drift-sat-") as tmp:
        configs = {}
        for drift in (True, False) if on_first else (False, True):
            workdir = Path(tmp) / ("on" if drift else "off")
            workdir.mkdir()
            config = write_config(workdir, batch=batch, bundle=BUNDLE)
            with config.open("a") as fh:
                enabled = drift and not a_a
                fh.write(f"\n[drift]\nenabled = {str(enabled).lower()}\nwindows = {windows}\n")
            configs[drift] = config
        got = _side_by_side(configs, warmup=warmup, seconds=seconds)
    rate = {d: results / elapsed for d, (results, _, elapsed) in got.items()}
    per_cpu = {d: results / max(cpu, 1e-9) for d, (results, cpu, _) in got.items()}
    return {"off": rate[False], "on": rate[True], "off_per_cpu": per_cpu[False], "on_per_cpu": per_cpu[True]}


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
    parser.add_argument("--skip-agent", action="store_true", help="skip the saturation rounds")
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="saturation: both agents at once, results per second and per CPU-second of each",
    )
    parser.add_argument(
        "--a-a",
        action="store_true",
        help="with --side-by-side: the drift-on side runs with drift off too (an A/A run: the "
        "method's own spread)",
    )
    parser.add_argument("--skip-fixed", action="store_true", help="skip the fixed-load rounds")
    parser.add_argument("--fixed-rounds", type=int, default=3)
    parser.add_argument(
        "--fixed-seconds",
        type=float,
        default=125.0,
        help="measured seconds per round (both sides at once); over 120 so that two reports close "
        "in it at the default min_interval_s of 60 s",
    )
    parser.add_argument(
        "--fixed-max-cpu", type=float, default=None, help="[drift] max_cpu on the fixed-load side"
    )
    parser.add_argument(
        "--fixed-windows", type=int, default=None, help="[drift] windows on the fixed-load side"
    )
    parser.add_argument(
        "--fixed-min-interval-s",
        type=float,
        default=None,
        help="[drift] min_interval_s on the fixed-load side (0: a report every `windows` windows, "
        "no sampling)",
    )
    parser.add_argument(
        "--fixed-no-sample", action="store_true", help="[drift] sample = false on the fixed-load side"
    )
    args = parser.parse_args()
    drift_us, predict_us, close_us = per_window_costs(args.batch, min(args.seconds, 3.0))
    print(
        f"in process, batch {args.batch}: drift {drift_us:.2f} us/window, Model.predict {predict_us:.2f} "
        f"us/window (drift/predict {drift_us / predict_us:.2f}x); closing a report {close_us:.0f} us"
    )
    if not args.skip_fixed:
        ratios_fixed = []
        budget = "default" if args.fixed_max_cpu is None else f"{args.fixed_max_cpu:g}"
        print(
            "fixed load: 16 streams x 6 channels at 100 Hz, hop 10 = 160 windows/s; CPU, share of one core; "
            f"[drift] max_cpu {budget}, windows {args.fixed_windows or 'default'}, min_interval_s "
            f"{'default' if args.fixed_min_interval_s is None else args.fixed_min_interval_s}, "
            f"sample {'false' if args.fixed_no_sample else 'default'}"
        )
        print(f"{'round':>5} {'off':>7} {'on':>7} {'on/off':>7} {'reports':>8} {'skipped':>8} {'load':>5}")
        for r in range(args.fixed_rounds):
            off, on, reports, skipped = fixed_load_pair(
                seconds=args.fixed_seconds,
                on_first=r % 2 == 1,  # neither side always started first
                max_cpu=args.fixed_max_cpu,
                windows=args.fixed_windows,
                min_interval_s=args.fixed_min_interval_s,
                sample=False if args.fixed_no_sample else None,
            )
            ratios_fixed.append(on / off)
            load = os.getloadavg()[0]
            print(
                f"{r:>5} {off:>7.2%} {on:>7.2%} {on / off:>7.3f} {reports:>8} {skipped:>8} {load:>5.1f}",
                flush=True,
            )
        median = statistics.median(ratios_fixed)
        verdict = "meets" if median <= FIXED_TARGET else "MISSES"
        print(
            f"median on/off CPU {median:.3f} ({verdict} the within-3 % goal; "
            f"min {min(ratios_fixed):.3f}, max {max(ratios_fixed):.3f})"
        )
    if args.skip_agent:
        return
    if args.side_by_side:
        a_a = " (A/A: the on side runs with drift off too)" if args.a_a else ""
        print(
            f"saturation side by side: bundle {BUNDLE.name}, batch {args.batch}, {args.seconds:g} s a round"
            + a_a
        )
        print(
            f"{'round':>5} {'off w/s':>9} {'on w/s':>9} {'on/off':>7} "
            f"{'off w/cpu-s':>12} {'on w/cpu-s':>11} {'on/off':>7}"
        )
        per_cpu_ratios, per_s_ratios = [], []
        for r in range(args.rounds):
            got = saturation_pair(
                batch=args.batch,
                windows=args.windows,
                seconds=args.seconds,
                warmup=args.warmup,
                on_first=r % 2 == 1,
                a_a=args.a_a,
            )
            per_cpu_ratios.append(got["on_per_cpu"] / got["off_per_cpu"])
            per_s_ratios.append(got["on"] / got["off"])
            print(
                f"{r:>5} {got['off']:>9.0f} {got['on']:>9.0f} {per_s_ratios[-1]:>7.3f} "
                f"{got['off_per_cpu']:>12.0f} {got['on_per_cpu']:>11.0f} {per_cpu_ratios[-1]:>7.3f}",
                flush=True,
            )
        median = statistics.median(per_cpu_ratios)
        verdict = "meets" if median >= TARGET else "MISSES"
        print(
            f"median on/off results per CPU-second {median:.3f} ({verdict} the {TARGET} target; "
            f"min {min(per_cpu_ratios):.3f}, max {max(per_cpu_ratios):.3f}); "
            f"results per second {statistics.median(per_s_ratios):.3f}"
        )
        return
    ratios = []
    print(f"bundle {BUNDLE.name}, batch {args.batch}, drift report every {args.windows} windows")
    print(f"{'round':>5} {'off w/s':>10} {'on w/s':>10} {'on/off':>7}")
    for r in range(args.rounds):
        rates = {}
        for drift in (False, True) if r % 2 == 0 else (True, False):  # neither side always first
            rates[drift] = drift_windows_per_s(
                drift=drift, batch=args.batch, windows=args.windows, seconds=args.seconds, warmup=args.warmup
            )
        off, on = rates[False], rates[True]
        ratios.append(on / off)
        print(f"{r:>5} {off:>10.0f} {on:>10.0f} {on / off:>7.3f}")
    median = statistics.median(ratios)
    verdict = "meets" if median >= TARGET else "MISSES"
    spread = f"min {min(ratios):.3f}, max {max(ratios):.3f}"
    print(f"median on/off {median:.3f} ({verdict} the {TARGET} target; {spread})")


if __name__ == "__main__":
    main()
