"""The drift observer's CPU budget (``[drift] max_cpu``), with clocks the test moves: whole batches
are skipped while the bucket is empty, at the cost of a compare, and every skipped window is in
the report that was open when it was skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.config import DriftConfig
from edgefleet.agent.drift_observer import DriftObserver
from edgefleet.agent.store import Store, StoreConfig
from edgefleet.cloud_sync.protocol import DriftBody
from edgefleet.runtime.batch import Batch
from edgefleet.runtime.bundle import Prediction, load_bundle
from edgefleet.runtime.windows import Window

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "models" / "bundles" / "basicmotions-edge-tflite"


class Clocks:
    """Wall time moved by the test; CPU time moved by each count (``cost`` seconds a count)."""

    def __init__(self, cost: float) -> None:
        self.now = 100.0
        self.cpu = 0.0
        self.cost = cost
        self.reads = 0

    def wall(self) -> float:
        return self.now

    def thread(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:  # the read after a count
            self.cpu += self.cost
        return self.cpu


def _batch(seq0: int, n: int, window_length: int, hop: int) -> Batch:
    rng = np.random.default_rng(seq0)
    windows = [
        Window(
            "imu",
            seq,
            float(seq),
            float(seq) + 1.0,
            rng.normal(size=(window_length, 6)).astype(np.float32),
            float(seq) + 1.0,
            start_index=seq * hop,
        )
        for seq in range(seq0, seq0 + n)
    ]
    return Batch.of(windows)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "store.db", StoreConfig(path=tmp_path / "store.db"))
    yield opened
    opened.close()


def test_an_empty_bucket_skips_whole_batches_until_it_refills_and_the_report_says_so(store: Store) -> None:
    bundle = load_bundle(BUNDLE)
    prep = bundle.manifest.preprocessing
    clocks = Clocks(cost=0.06)  # one count: 60 ms of CPU, more than the 50 ms burst
    config = DriftConfig(max_cpu=0.01, windows=10_000, min_interval_s=0, sample=False)
    drift = DriftObserver(config, store, clock=clocks.wall, cpu_clock=clocks.thread)
    drift.attach(bundle)
    answers = [Prediction(bundle.manifest.labels[0], 0.9, np.zeros(4, np.float32))] * 4
    seq = 0

    def feed() -> None:
        nonlocal seq
        drift(_batch(seq, 4, prep.window_length, prep.hop), answers)
        seq += 4

    feed()  # counted: 0.05 - 0.06 leaves the bucket 10 ms short, refilled in 1 s at 1 %
    assert (drift.skipped_windows, clocks.reads) == (0, 2)
    for _ in range(9):
        clocks.now += 0.1  # 0.1 .. 0.9 s later: still short
        feed()
    assert drift.skipped_windows == 36
    assert clocks.reads == 2  # skipped without reading the CPU clock or calling the monitor
    clocks.now += 0.11  # 1.01 s after the count: a token again
    feed()
    assert clocks.reads == 4
    assert drift.skipped_windows == 36
    drift.flush()
    bodies = [DriftBody.model_validate(i.payload) for i in store.outbox_peek(100) if i.kind == "drift"]
    assert len(bodies) == 1
    assert bodies[0].windows == 8
    assert bodies[0].skipped_windows == 36
    assert drift.status()["skipped_windows"] == 36


def test_skips_before_a_bundle_is_attached_belong_to_no_report_of_it(store: Store) -> None:
    bundle = load_bundle(BUNDLE)
    prep = bundle.manifest.preprocessing
    clocks = Clocks(cost=0.06)
    config = DriftConfig(max_cpu=0.01, windows=10_000, min_interval_s=0, sample=False)
    drift = DriftObserver(config, store, clock=clocks.wall, cpu_clock=clocks.thread)
    drift.attach(bundle)
    answers = [Prediction(bundle.manifest.labels[0], 0.9, np.zeros(4, np.float32))] * 4
    drift(_batch(0, 4, prep.window_length, prep.hop), answers)
    clocks.now += 0.5
    drift(_batch(4, 4, prep.window_length, prep.hop), answers)  # skipped
    assert drift.skipped_windows == 4
    drift.flush()
    drift.attach(bundle)  # a model swap: a new monitor
    clocks.now += 2.0
    drift(_batch(8, 4, prep.window_length, prep.hop), answers)
    drift.flush()
    bodies = [DriftBody.model_validate(i.payload) for i in store.outbox_peek(100) if i.kind == "drift"]
    assert [(b.windows, b.skipped_windows) for b in bodies] == [(4, 4), (4, 0)]
