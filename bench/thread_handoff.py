"""What one hand-over between two Python threads costs on this machine, beside a plain call.

    python bench/thread_handoff.py [--count 20000] [--rounds 3]

The agent is a pipeline of threads (source reader -> inference worker -> store writer), and a
thread that sleeps until another hands it work pays a wake-up: a futex syscall on the waker's
side, a scheduler wake-up and a GIL hand-over on the sleeper's. On bare metal that is a few
microseconds; on a virtual machine waking a thread on another vCPU can take tens. This prints
the round trip of two threads handing a token back and forth through semaphores (two wake-ups
per round trip), unpinned and with both threads pinned to one core, beside the same number of
plain function calls in one thread (the baseline), as a ratio. Compare it with the model's time
per batch (``edgefleet model bench``) to see what one wake-up per batch costs a pipeline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time


def _round_trips(count: int) -> float:
    """Seconds per round trip: this thread wakes a partner, which wakes this thread back."""
    ping, pong = threading.Semaphore(0), threading.Semaphore(0)

    def partner() -> None:
        for _ in range(count):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=partner, name="handoff-partner")
    thread.start()
    start = time.perf_counter()
    for _ in range(count):
        ping.release()
        pong.acquire()
    elapsed = time.perf_counter() - start
    thread.join()
    return elapsed / count


def _plain_calls(count: int) -> float:
    """Seconds per pair of calls in one thread: the same work with no hand-over."""
    token = threading.Semaphore(0)
    start = time.perf_counter()
    for _ in range(count):
        token.release()
        token.acquire()
    return (time.perf_counter() - start) / count


def _pinned(fn: object, count: int) -> float | None:
    """``fn(count)`` with the whole process on one CPU; None where affinity cannot be set."""
    assert callable(fn)
    if not hasattr(os, "sched_setaffinity"):
        return None
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
    except OSError:
        return None
    try:
        return float(fn(count))
    finally:
        os.sched_setaffinity(0, before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="round trips per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cross, pinned, plain = [], [], []
    for _ in range(args.rounds):  # interleaved, so machine noise hits every case
        cross.append(_round_trips(args.count))
        one_core = _pinned(_round_trips, args.count)
        if one_core is not None:
            pinned.append(one_core)
        plain.append(_plain_calls(args.count))
    base = statistics.median(plain)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"thread hand-over, {args.count} round trips x {args.rounds} rounds, {cpus} CPUs (median)")
    print(f"  {'case':44s} {'us/round trip':>14s} {'ratio':>10s}")
    print(f"  {'one thread: release + acquire (baseline)':44s} {base * 1e6:14.2f} {1.0:9.1f}x")
    rows = [("two threads, any CPU (the agent's case)", cross)]
    if pinned:
        rows.append(("two threads pinned to one CPU", pinned))
    for label, values in rows:
        value = statistics.median(values)
        print(f"  {label:44s} {value * 1e6:14.2f} {value / base:9.1f}x")
    print("  a round trip is two wake-ups; one wake-up per batch costs about half of it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
