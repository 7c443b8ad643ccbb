"""Ring buffer push rates beside a plain-Python baseline, as ratios.

    python bench/ring_buffer.py [--seconds 1.0] [--channels 6] [--block 256]

Each case pushes the same pre-made samples for about ``--seconds`` with a consumer popping windows
between blocks (so the buffer never fills and nothing is dropped), and the baseline appends the
same samples to a ``collections.deque(maxlen=capacity)`` (what a hand-written buffer would do).
Cases alternate rounds so machine noise hits both. Targets: >= 1M samples/s in blocks and
>= 200k samples/s one at a time.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from edgefleet.runtime.ringbuffer import StreamBuffer

WINDOW, HOP, CAPACITY = 100, 50, 4096


def _buffer(channels: int) -> StreamBuffer:
    return StreamBuffer("bench", channels, CAPACITY, window_length=WINDOW, hop=HOP)


def _timed(fn: Callable[[], int], seconds: float) -> tuple[int, float]:
    samples, start = 0, time.perf_counter()
    while True:
        samples += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return samples, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per case per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=6)
    parser.add_argument("--block", type=int, default=256, help="samples per push_block call")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = 1024
    block_data = rng.standard_normal((args.block, args.channels)).astype(np.float32)
    block_ts = np.arange(args.block, dtype=np.float64)
    rows = list(rng.standard_normal((n, args.channels)).astype(np.float32))
    stamps = [float(i) for i in range(n)]

    buf_block = _buffer(args.channels)
    buf_single = _buffer(args.channels)
    dq: deque[tuple[np.ndarray, float]] = deque(maxlen=CAPACITY)

    def ours_block() -> int:
        accepted = buf_block.push_block(block_data, block_ts)
        buf_block.pop_windows(1_000)
        return accepted

    def base_block() -> int:
        # the baseline a block producer would write: extend a deque with the block's rows
        dq.extend(zip(block_data, block_ts, strict=True))
        return int(args.block)

    def ours_single() -> int:
        push = buf_single.push
        for row, ts in zip(rows, stamps, strict=True):
            push(row, ts)
        buf_single.pop_windows(1_000)
        return n

    def base_single() -> int:
        append = dq.append
        for row, ts in zip(rows, stamps, strict=True):
            append((row, ts))
        return n

    cases = {"ours_block": ours_block, "base_block": base_block, "ours_single": ours_single}
    cases["base_single"] = base_single
    totals = {name: [0, 0.0] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            count, elapsed = _timed(fn, args.seconds)
            totals[name][0] += count
            totals[name][1] += elapsed
    rate = {name: c / t for name, (c, t) in totals.items()}

    setup = f"{args.channels} channels, window {WINDOW}, hop {HOP}, capacity {CAPACITY}"
    print(f"ring buffer push rates ({setup})")
    print(f"{'case':<28}{'StreamBuffer':>16}{'deque baseline':>18}{'ratio':>9}{'target':>12}")
    for label, ours, base, target in (
        (f"push_block({args.block} rows)", "ours_block", "base_block", 1_000_000),
        ("push (one sample)", "ours_single", "base_single", 200_000),
    ):
        verdict = "ok" if rate[ours] >= target else "BELOW"
        print(
            f"{label:<28}{rate[ours]:>14,.0f}/s{rate[base]:>16,.0f}/s{rate[ours] / rate[base]:>8.2f}x"
            f"{target:>10,}/s {verdict}"
        )
    stats = buf_block.stats
    print(f"drops during the run: block {stats.dropped}, single {buf_single.stats.dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
