"""Writer process for the kill -9 test: writes batches forever, printing each committed last id.

Usage: python crash_writer.py DB_PATH SYNCHRONOUS SEED. A line is printed (and flushed) only
after write_results() returned, i.e. after COMMIT: every id printed must survive a SIGKILL.
It also drains and acknowledges the outbox now and then, so kills land in every kind of write.
"""

from __future__ import annotations

import random
import sys
import time

from edgefleet.agent.store import MetricSample, ResultRecord, Store, StoreConfig


def main() -> None:
    path, synchronous, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    config = StoreConfig.model_validate(
        {
            "path": path,
            "synchronous": synchronous,
            "store_raw_outputs": True,
            "wal_autocheckpoint_pages": 64,  # checkpoints happen often, so kills land in them too
            # Retention runs often but has nothing to delete, so every committed id must remain.
            "max_bytes": 256 * 1024 * 1024,
            "hard_max_bytes": 512 * 1024 * 1024,
            "max_age_s": None,
            "retention_interval_s": 0.2,
        }
    )
    store = Store.open(path, config)
    print("ready", flush=True)
    seq = 0
    while True:
        n = rng.choice((1, 16, 64, 200))
        now = time.time()
        records = [
            ResultRecord(
                "imu", now, now + 1, "motion", "1.0.0", "walk", 0.9, [0.1] * 16, 1.0, window_seq=seq + i
            )
            for i in range(n)
        ]
        seq += n
        ids = store.write_results(records)
        print(f"committed {ids[-1]}", flush=True)
        roll = rng.random()
        if roll < 0.3:
            store.outbox_ack([item.id for item in store.outbox_peek(3)])
        elif roll < 0.4:
            store.write_metrics([MetricSample(now, "loop", float(seq))])


if __name__ == "__main__":
    main()
