"""Drift in the running pipeline: real bundle, real replay source, real SQLite store.

The BasicMotions test recording (looped three times) is replayed as fast as possible through
the pipeline with the agent's :class:`DriftObserver`: clean it raises no alert; with a fault it
raises ``drift.alert`` naming the faulty channel, and every report reaches the outbox as a
valid ``drift`` message carrying raw bin counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.config import DriftConfig
from edgefleet.agent.drift_monitor import DriftMonitor, DriftReport
from edgefleet.agent.drift_observer import DriftObserver
from edgefleet.agent.pipeline import Pipeline, PipelineSettings, StreamSpec
from edgefleet.agent.sources import ReplaySourceConfig, create_source
from edgefleet.agent.store import Store, StoreConfig
from edgefleet.cloud_sync.protocol import DriftBody
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_manifest import BundleManifest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "models" / "bundles" / "basicmotions-edge-tflite"
RECORDING = REPO / "models" / "data" / "basicmotions_test_stream.npz"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "store.db", StoreConfig(path=tmp_path / "store.db"))
    yield store
    store.close()


def _recording(tmp_path: Path, fault: str | None) -> Path:
    data = np.tile(np.load(RECORDING)["samples"].astype(np.float32), (3, 1))
    std = np.load(REPO / "models" / "data" / "basicmotions.npz")["X_train"].reshape(-1, 6).std(axis=0)
    if fault == "stuck gyr_x":
        data[:, 3] = data[0, 3]
    elif fault == "gain x1.5 on gyr_z":
        data[:, 5] *= 1.5
    elif fault == "offset of one std on acc_y":
        data[:, 1] += std[1]
    elif fault == "gyr_x and gyr_y swapped":
        data[:, [3, 4]] = data[:, [4, 3]]
    elif fault == "noise of half a std on acc_x":
        data[:, 0] += np.random.default_rng(0).normal(0.0, 0.5 * std[0], len(data))
    elif fault == "dead gyr_y":
        data[:, 4] = 0.0
    path = tmp_path / f"{fault or 'clean'}.npy".replace(" ", "_")
    np.save(path, data)
    return path


def _run(
    bundle: Bundle, store: Store, recording: Path, config: DriftConfig, streams: tuple[str, ...] = ("imu",)
) -> DriftObserver:
    drift = DriftObserver(config, store)

    def load() -> Bundle:
        drift.attach(bundle)
        return bundle

    specs = [
        StreamSpec(
            name,
            partial(
                create_source, ReplaySourceConfig(name=name, file=recording, realtime=False, rate_hz=10.0)
            ),
        )
        for name in streams
    ]
    pipeline = Pipeline(
        store=store,
        streams=specs,
        load_bundle=load,
        settings=PipelineSettings(backpressure="block", max_batch_size=16),
        observers=[drift],
    )
    pipeline.start()
    deadline = time.monotonic() + 120
    while (
        not all(getattr(s, "finished", False) for s in pipeline.sources().values()) or not pipeline.sources()
    ):
        assert time.monotonic() < deadline, "replay did not finish"
        time.sleep(0.05)
    assert pipeline.stop(timeout=60).completed
    return drift


def _drift_messages(store: Store) -> list[DriftBody]:
    return [DriftBody.model_validate(i.payload) for i in store.outbox_peek(10_000) if i.kind == "drift"]


# max_cpu = 1: replaying as fast as possible must not skip batches where counts are checked.
EVERY_BATCH = DriftConfig(max_cpu=1.0)


def test_clean_replay_sends_reports_and_raises_no_alert(tmp_path: Path, store: Store) -> None:
    bundle = load_bundle(BUNDLE)
    drift = _run(bundle, store, _recording(tmp_path, None), EVERY_BATCH)
    messages = _drift_messages(store)
    assert len(messages) == 4  # 1198 windows: four full reports of 256, the rest still open
    assert all(m.drift_version == 3 and m.windows == 256 for m in messages)
    assert all(m.model_name == bundle.manifest.name for m in messages)
    assert sum(messages[0].channels[0].bins or []) == 50 + 255 * 10  # each sample once
    assert messages[0].moments is not None
    assert messages[0].moments[0] == 50 + 255 * 10
    assert messages[0].outputs is not None
    assert sum(messages[0].outputs.classes.values()) == 256
    assert store.query_events(kind="drift.alert") == []
    status = drift.status()
    assert status["enabled"] is True
    assert status["reports"] == 4
    assert status["drifted"] is False
    assert status["skipped_windows"] == 0
    assert all(m.skipped_windows == 0 for m in messages)


def test_max_cpu_skips_whole_batches_beyond_the_budget_and_says_so(tmp_path: Path, store: Store) -> None:
    bundle = load_bundle(BUNDLE)
    drift = _run(
        bundle, store, _recording(tmp_path, None), DriftConfig(max_cpu=1e-9, windows=8, min_interval_s=0)
    )
    status = drift.status()
    inferred = len(store.query_results(limit=100_000))
    assert status["skipped_windows"] > 0
    assert status["reports"] * 8 + status["skipped_windows"] <= inferred
    messages = _drift_messages(store)
    assert sum(m.skipped_windows or 0 for m in messages) <= status["skipped_windows"]


def test_a_stuck_sensor_raises_one_alert_naming_its_channel(tmp_path: Path, store: Store) -> None:
    bundle = load_bundle(BUNDLE)
    drift = _run(bundle, store, _recording(tmp_path, "stuck gyr_x"), EVERY_BATCH)
    alerts = store.query_events(kind="drift.alert")
    assert len(alerts) == 1
    data = alerts[0]["data"]
    assert data["channel"] == "gyr_x"
    assert data["report"] == 1
    assert data["metric"] in ("psi", "js", "ks")
    assert "gyr_x" in alerts[0]["message"]
    assert drift.status()["channels"]["gyr_x"]["drifted"] is True
    messages = _drift_messages(store)
    assert [m.drifted for m in messages] == [False, True, True, True]
    assert messages[1].channels[3].drifted is True
    assert messages[0].channels[3].over  # over in report 0, flagged from report 1 (alert_after 2)


@pytest.mark.parametrize(
    ("fault", "channels"),
    [
        ("gain x1.5 on gyr_z", {"gyr_z"}),
        ("offset of one std on acc_y", {"acc_y"}),
        ("gyr_x and gyr_y swapped", {"gyr_x", "gyr_y"}),
        ("noise of half a std on acc_x", {"acc_x"}),
        ("dead gyr_y", {"gyr_y"}),
    ],
)
def test_each_realistic_fault_alerts_on_its_channels_within_two_reports(
    fault: str, channels: set[str], tmp_path: Path, store: Store
) -> None:
    _run(load_bundle(BUNDLE), store, _recording(tmp_path, fault), EVERY_BATCH)
    alerts = store.query_events(kind="drift.alert")
    assert {a["data"]["channel"] for a in alerts} == channels, [a["message"] for a in alerts]
    assert all(a["data"]["report"] <= 1 for a in alerts)


def test_alert_after_one_flags_in_the_first_report(tmp_path: Path, store: Store) -> None:
    bundle = load_bundle(BUNDLE)
    _run(bundle, store, _recording(tmp_path, "stuck gyr_x"), DriftConfig(alert_after=1, max_cpu=1.0))
    assert [e["data"]["report"] for e in store.query_events(kind="drift.alert")] == [0]


def test_a_bundle_without_a_reference_profile_runs_with_drift_off(tmp_path: Path, store: Store) -> None:
    bundle = load_bundle(BUNDLE)
    plain = Bundle(
        bundle.path, BundleManifest.model_validate({**bundle.manifest.model_dump(), "reference": None})
    )
    drift = _run(plain, store, _recording(tmp_path, None), DriftConfig())
    assert drift.status() == {
        "enabled": False,
        "reason": f"bundle {plain.manifest.name} {plain.manifest.version} has no reference profile",
    }
    assert len(store.query_events(kind="drift_off")) == 1
    assert _drift_messages(store) == []
    assert len(store.query_results(limit=10_000)) > 0  # inference went on


def test_streams_popped_as_one_ring_group_count_every_sample_once(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four replay streams of one shape share a ring group: their batches reach the monitor as
    # group calls (add_group) while all three have windows, window by window otherwise.
    group_calls: list[int] = []
    add_group = DriftMonitor.add_group

    def counted(monitor: DriftMonitor, *args: Any, **kwargs: Any) -> list[DriftReport]:
        group_calls.append(1)
        return add_group(monitor, *args, **kwargs)

    monkeypatch.setattr(DriftMonitor, "add_group", counted)
    bundle = load_bundle(BUNDLE)
    config = DriftConfig(max_cpu=1.0, windows=64, min_interval_s=0)
    streams = ("imu-a", "imu-b", "imu-c", "imu-d")  # 4 x 4 windows fill a batch of 16 in one group pop
    drift = _run(bundle, store, _recording(tmp_path, None), config, streams=streams)
    drift.flush()
    assert group_calls, "no batch came as a ring group pop"
    messages = _drift_messages(store)
    inferred = len(store.query_results(limit=100_000))
    assert inferred == 4 * 1196  # 12,000 samples per stream, window 50, hop 10
    assert sum(m.windows or 0 for m in messages) == inferred
    assert all(not m.skipped_windows for m in messages)
    for c in range(6):  # every sample of every stream once, on each channel
        assert sum(sum(m.channels[c].bins or []) for m in messages) == 4 * 12_000
