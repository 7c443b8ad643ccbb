"""Subprocess driver: open a real store, run SyncService until SIGTERM (or kill -9).

    python sync_driver.py STORE_PATH DEVICE_ID PORT [--protocol mqtt5] [--rate MSGS_PER_S]

Prints "ready" once the service started, so the test knows the process is up.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from edgefleet.agent.store import Store, StoreConfig
from edgefleet.cloud_sync import SyncConfig, SyncService


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("device_id")
    parser.add_argument("port", type=int)
    parser.add_argument("--protocol", default="mqtt5")
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    path = Path(args.store)
    store = Store.open(path, StoreConfig(path=path))
    config = SyncConfig(
        port=args.port,
        protocol=args.protocol,
        max_messages_per_s=args.rate,
        reconnect_min_s=0.1,
        reconnect_max_s=1.0,
        drain_interval_s=0.1,
        max_inflight=8,
        end_to_end_ack=False,  # a plain collector reads the uplink, no edgefleet controller
    )
    service = SyncService(store, config, args.device_id)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    print("ready", flush=True)
    stop.wait()
    service.stop()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
