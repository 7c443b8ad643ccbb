"""What the end-to-end acknowledgement costs when draining a backlog into a real controller.

    python bench/delivery_drain.py [--results 50000] [--batch 100] [--repeat 2] [--json out.json]

Both runs drain the same kind of stored backlog (``--results`` results, ``--batch`` per outbox
row) through a local Mosquitto into an in-process controller (``ControllerService``: real ingest,
SQLite database) and end when the device's outbox is empty and the controller stored every
result:

- end-to-end: ``sync.end_to_end_ack = true`` (the default): a row leaves the device store only
  once the controller's ``ack`` arrives.
- baseline: ``sync.end_to_end_ack = false``: the broker's PUBACK deletes the row (the behaviour
  before issue 11; it loses data when the broker restarts without persistence).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgefleet.agent.store import Store, StoreConfig  # noqa: E402
from edgefleet.cloud_sync import SyncConfig, SyncService  # noqa: E402
from edgefleet.controller.config import (  # noqa: E402
    ControllerConfig,
    DatabaseConfig,
    HttpConfig,
    MqttConfig,
    RetentionConfig,
)
from edgefleet.controller.service import ControllerService  # noqa: E402
from tests.support.broker import MosquittoBroker  # noqa: E402
from tests.support.sync_fixtures import result_records  # noqa: E402


def fill(path: Path, total: int, batch: int) -> Store:
    store = Store.open(
        path, StoreConfig(path=path, synchronous="OFF", max_bytes=1 << 30, hard_max_bytes=1 << 31)
    )
    for start in range(0, total, batch):
        store.write_results(result_records(min(batch, total - start), start_seq=start))
    return store


def run(
    workdir: Path,
    broker: MosquittoBroker,
    total: int,
    batch: int,
    end_to_end: bool,
    device_id: str,
    max_awaiting: int,
) -> dict[str, Any]:
    store = fill(workdir / "store.db", total, batch)
    controller = ControllerService(
        ControllerConfig(
            mqtt=MqttConfig(host=broker.host, port=broker.port),
            database=DatabaseConfig(sqlite_path=workdir / "controller.db"),
            http=HttpConfig(port=0),
            retention=RetentionConfig(interval_s=3600),
        )
    )
    controller.start_background()
    assert controller.mqtt.wait_ready(15), controller.mqtt.last_error
    config = SyncConfig(
        port=broker.port, drain_interval_s=0.05, end_to_end_ack=end_to_end, max_awaiting_ack=max_awaiting
    )
    service = SyncService(store, config, device_id, state_path=workdir / "sync.json")
    start = time.perf_counter()
    service.start()
    try:
        while store.outbox_backlog():
            time.sleep(0.01)
        while True:
            report = controller.database.delivery_report(device_id)
            if report is not None and report.results_received >= total:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        state = service.state()
    finally:
        service.stop()
        controller.stop()
        store.close()
    return {
        "seconds": elapsed,
        "results_per_s": total / elapsed,
        "resent": state.resent,
        "controller_acks": state.controller_acks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-awaiting", type=int, default=SyncConfig().max_awaiting_ack)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"end_to_end": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "broker").mkdir()
        with MosquittoBroker(workdir / "broker") as broker:
            for i in range(args.repeat):
                for name, e2e in (("baseline", False), ("end_to_end", True)):
                    run_dir = workdir / f"{name}-{i}"
                    run_dir.mkdir()
                    # A fresh store numbers its rows from 1 again: a new device id per run, or the
                    # broker's session would hand this run acknowledgements meant for the last one.
                    device_id = f"bench-{name.replace('_', '-')}-{i}"
                    runs[name].append(
                        run(run_dir, broker, args.results, args.batch, e2e, device_id, args.max_awaiting)
                    )
    best = {name: max(r["results_per_s"] for r in rs) for name, rs in runs.items()}
    print(f"{args.results} results, {args.batch} per outbox row, local Mosquitto, controller on SQLite")
    print(f"{'':<34}{'results/s (best of ' + str(args.repeat) + ')':>26}")
    print(f"{'baseline: PUBACK deletes the row':<34}{best['baseline']:>26.0f}")
    print(f"{'end-to-end: controller ack':<34}{best['end_to_end']:>26.0f}")
    print(f"{'ratio end-to-end / baseline':<34}{best['end_to_end'] / best['baseline']:>26.2f}x")
    print(f"resends in the end-to-end runs: {[r['resent'] for r in runs['end_to_end']]}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "best": best}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
