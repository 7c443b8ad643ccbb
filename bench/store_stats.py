"""Store.stats() on a store at its soft cap: kept row counts beside count(*), same run.

    python bench/store_stats.py [--rows 2400000] [--calls 20] [--repeat 3]

The agent's health thread calls ``Store.stats()`` every ``health.metrics_interval_s`` (10 s).
Until schema v8 it ran ``SELECT count(*)`` on every table, which reads all of ``results``: a
device at 160 windows/s keeps ~2.4 M result rows at the default 256 MiB soft cap. Since v8 the
history tables' counts are ``sqlite_sequence.seq - store_meta.<table>_deleted_total``.

The store is filled through ``Store.write_result_rows`` (the agent's path), synced, and trimmed
by retention's age cut (10 % of the rows), so the deleted-rows counters are not zero. Baseline:
the same ``Store.stats()`` with its row counts taken by ``count(*)`` per table, as before v8, on
a second ``Store`` over the same file (same page cache). Rounds interleave the two; each figure
is the median call of the best round, in wall and in this process's CPU time. Both report the
same rows, checked. Goal: >= 20x faster (CPU); a call well under 1 ms.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgefleet.agent.store import Store, StoreConfig  # noqa: E402

TARGET = 20.0
_BATCH = 4096
_TABLES = ("results", "metrics", "events", "outbox")


class CountStarStore(Store):
    """``Store`` with the row counts of schema v7 and earlier: count(*) on every table."""

    def _row_counts(self, conn: sqlite3.Connection) -> dict[str, int]:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in _TABLES}


def fill(path: Path, rows: int) -> float:
    """Write ``rows`` results as the agent does, sync them all, then age out the oldest 10 %;
    returns the seconds it took."""
    started = time.monotonic()
    config = StoreConfig(
        path=path, synchronous="OFF", max_bytes=1 << 40, hard_max_bytes=1 << 40, max_age_s=None
    )
    now = time.time()
    old = rows // 10
    total = rows + old

    def row(i: int) -> tuple[object, ...]:
        t = (now - 7200.0 if i < old else now - 600.0) + i * 1e-3  # the first ones two hours old
        return (
            "imu", t, t + 2.56, "basicmotions", "1.0.0", ("walking", "running")[i % 2],
            0.5 + (i % 50) / 100, None, 1.7, "edge", None, i, t,
        )  # fmt: skip

    with Store.open(path, config) as store:
        for start in range(0, total, _BATCH):
            store.write_result_rows([row(i) for i in range(start, min(total, start + _BATCH))])
        while items := store.outbox_peek(10_000):
            store.outbox_ack([i.id for i in items])
    aged = config.model_copy(update={"max_age_s": 3600.0})
    with Store.open(path, aged) as store:
        report = store.enforce_retention()
        assert report.deleted_by_age == {"results": old}, report.deleted_by_age
        store.checkpoint("TRUNCATE")
    return time.monotonic() - started


def time_calls(store: Store, calls: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one ``store.stats()`` call."""
    walls, cpus = [], []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        store.stats()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_400_000, help="result rows left after retention")
    parser.add_argument("--calls", type=int, default=20, help="stats() calls per variant and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is the best of them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        path = Path(tmp) / "store.db"
        built = fill(path, args.rows)
        config = StoreConfig(path=path, retention_interval_s=1e9)
        with Store.open(path, config) as kept, CountStarStore.open(path, config) as counted:
            rows = kept.stats().rows
            assert rows == counted.stats().rows, (rows, counted.stats().rows)
            size = kept.stats().size_bytes
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.repeat):  # interleaved, so load from elsewhere hits both alike
                for label, store in (("count(*), as before v8", counted), ("kept counts (v8)", kept)):
                    wall, cpu = time_calls(store, args.calls)
                    old = best.get(label, (math.inf, math.inf))
                    best[label] = (min(old[0], wall), min(old[1], cpu))
    print(
        f"store: {rows['results']} results ({rows}), {size / 2**20:.0f} MiB, built in {built:.0f} s; "
        f"median of {args.calls} calls, best of {args.repeat} interleaved rounds"
    )
    base_wall, base_cpu = best["count(*), as before v8"]
    print(f"{'Store.stats()':28} {'ms/call':>8} {'CPU ms/call':>12} {'vs count(*)':>12} {'(CPU time)':>11}")
    for label, (wall, cpu) in best.items():
        ratios = f"{base_wall / wall:11.1f}x {base_cpu / cpu:10.1f}x"
        print(f"{label:28} {wall * 1e3:8.3f} {cpu * 1e3:12.3f} {ratios}")
    ratio = base_cpu / best["kept counts (v8)"][1]
    print(f"target Store.stats() >= {TARGET:.0f}x faster than with count(*) (CPU): {ratio:.1f}x, "
          f"{'met' if ratio >= TARGET else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
