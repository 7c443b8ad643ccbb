"""Controller: merging drift reports by model version vs listing the same reports, same run.

    python bench/fleet_drift_merge.py [--reports 5000] [--devices 20] [--rounds 3] [--drift-version 3]

A throw-away SQLite controller database gets ``--reports`` drift reports (``--drift-version`` 3,
what agents send, with the cross-channel moments; 2 without them) (the shipped
bundle's 6 channels x 100 bins and 4 classes, counts of the real test recording) spread over
``--devices`` devices. Then, alternating, per round:

* merge: what ``GET /api/fleet/drift`` does (``Database.drift_counts`` over the range +
  ``merge_drift``: sum the counts, score once against the reference);
* baseline: what ``GET /api/devices/{id}/drift`` does for every device (``Database.drift_reports``
  listing each device's reports with their details).

Printed: milliseconds for each, per report, and merge / baseline (median over rounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgefleet.cloud_sync.protocol import make_envelope  # noqa: E402
from edgefleet.controller.config import DatabaseConfig  # noqa: E402
from edgefleet.controller.dal import open_database  # noqa: E402
from edgefleet.controller.drift_counts import Thresholds, merge_drift  # noqa: E402
from edgefleet.controller.drift_references import DriftReferences  # noqa: E402
from edgefleet.controller.ingest import envelope_to_message  # noqa: E402
from edgefleet.runtime.bundle_manifest import parse_manifest  # noqa: E402
from edgefleet.runtime.drift_cross import pack_moments  # noqa: E402
from edgefleet.runtime.drift_stats import BinCounter, score_counts  # noqa: E402

BUNDLES = REPO / "models" / "bundles"
MANIFEST = parse_manifest((BUNDLES / "basicmotions-edge-tflite" / "manifest.json").read_text())
RECORDING = REPO / "models" / "data" / "basicmotions_test_stream.npz"


def report_body(samples: np.ndarray, labels: list[str], version: int) -> dict[str, object]:
    profile = MANIFEST.reference
    assert profile is not None
    counter = BinCounter(profile, MANIFEST.labels)
    counter.add_samples(samples)
    counter.add_outputs(labels, np.full(len(labels), 0.9))
    counts = counter.take()
    scores = score_counts(profile, counts, MANIFEST.labels)
    assert scores.outputs is not None
    assert counts.moments is not None
    return {
        "model_name": MANIFEST.name,
        "model_version": MANIFEST.version,
        "window_start": 0.0,
        "window_end": 0.0,
        "drift_version": version,
        "moments": pack_moments(counts.moments) if version >= 3 else None,
        "channels": [
            {
                "channel": c.name,
                "mean": c.mean,
                "std": c.std,
                "psi": c.psi,
                "js": c.js,
                "ks": c.ks,
                "bins": c.bins,
            }
            for c in scores.channels
        ],
        "outputs": {
            "windows": scores.outputs.windows,
            "classes": scores.outputs.classes,
            "confidence": scores.outputs.confidence,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drift-version", type=int, choices=(2, 3), default=3)
    args = parser.parse_args()
    data = np.load(RECORDING)["samples"].astype(np.float64)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        database = open_database(DatabaseConfig(sqlite_path=Path(tmp) / "controller.db"))
        start = time.time() - args.reports
        messages = []
        for i in range(args.reports):
            at = int(rng.integers(0, len(data) - 2600))
            body = report_body(
                data[at : at + 2600], list(rng.choice(MANIFEST.labels, 256)), args.drift_version
            )
            body["window_start"], body["window_end"] = start + i - 1, start + i
            device = f"dev-{i % args.devices:03d}"
            envelope = make_envelope(device, "drift", body, message_id=i + 1)
            messages.append(envelope_to_message(envelope, received_at=start + i))
            if len(messages) == 500:
                database.ingest(messages, result_bucket_s=60)
                messages = []
        if messages:
            database.ingest(messages, result_bucket_s=60)
        references = DriftReferences([BUNDLES])
        until = time.time() + 1
        merge_ms, list_ms = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            rows = database.drift_counts(since=0, until=until)
            result = merge_drift(rows, references, Thresholds(), since=0, until=until)
            merge_ms.append((time.perf_counter() - t0) * 1000)
            assert result.groups[0].reports == args.reports
            t0 = time.perf_counter()
            listed = sum(
                len(database.drift_reports(f"dev-{d:03d}", since=0, limit=10_000))
                for d in range(args.devices)
            )
            list_ms.append((time.perf_counter() - t0) * 1000)
            assert listed == args.reports
        database.close()
    merge, base = statistics.median(merge_ms), statistics.median(list_ms)
    print(
        f"{args.reports} version {args.drift_version} reports, {args.devices} devices, SQLite,"
        f" median of {args.rounds} rounds"
    )
    print(f"  merge (fleet drift)       {merge:8.1f} ms  {merge * 1000 / args.reports:7.1f} us/report")
    print(f"  baseline (list reports)   {base:8.1f} ms  {base * 1000 / args.reports:7.1f} us/report")
    print(f"  merge / baseline          {merge / base:8.2f}x")


if __name__ == "__main__":
    main()
