"""Fleet drift through the real ingest mapping, database (SQLite and PostgreSQL) and HTTP API.

Reports are made the way the agent makes them (``DriftReport.body`` over :class:`BinCounter`
counts of the real BasicMotions recording against the shipped bundle's reference), ingested, and
merged by the API; the merged scores must equal the scores of the concatenated data counted in
one pass, which an average of the reports' scores does not.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from edgefleet.agent.drift_monitor import DriftReport
from edgefleet.cloud_sync.protocol import make_envelope
from edgefleet.controller.api import ControllerContext, create_app
from edgefleet.controller.auth import create_token
from edgefleet.controller.commands import CommandService
from edgefleet.controller.config import ControllerConfig
from edgefleet.controller.dal import Database
from edgefleet.controller.drift_counts import decode_bins
from edgefleet.controller.drift_references import FleetDriftConfig
from edgefleet.controller.ingest import envelope_to_message
from edgefleet.controller.live import FleetChanges
from edgefleet.runtime.bundle_manifest import parse_manifest
from edgefleet.runtime.drift_stats import BinCounter, DriftCounts, score_counts
from tests.conftest import MODELS_DIR
from tests.unit.controller.db_fixtures import DB_KINDS, throwaway_database

pytestmark = pytest.mark.integration

MANIFEST = parse_manifest((MODELS_DIR / "bundles" / "basicmotions-edge-tflite" / "manifest.json").read_text())
PROFILE = MANIFEST.reference
assert PROFILE is not None
LABELS = MANIFEST.labels
RECORDING = np.load(MODELS_DIR / "data" / "basicmotions_test_stream.npz")["samples"].astype(np.float64)
NOW = time.time()


def counted(samples: np.ndarray, seed: int) -> DriftCounts:
    assert PROFILE is not None
    counter = BinCounter(PROFILE, LABELS)
    counter.add_samples(samples)
    rng = np.random.default_rng(seed)
    windows = max(1, len(samples) // 100)
    counter.add_outputs(list(rng.choice(LABELS, windows)), rng.uniform(0.3, 1.0, windows))
    return counter.take()


def report_body(counts: DriftCounts, index: int, version: str = MANIFEST.version) -> dict[str, Any]:
    assert PROFILE is not None
    scores = score_counts(PROFILE, counts, LABELS)
    names = [c.name for c in PROFILE.channels]
    report = DriftReport(
        index=index,
        start_sample=0,
        end_sample=int(counts.samples.max()),
        window_start=NOW - 600 + index * 60,
        window_end=NOW - 570 + index * 60,
        windows=counts.windows,
        skipped_windows=0,
        scores=scores,
        counts=counts,
        over={n: [] for n in names},
        drifted=dict.fromkeys(names, False),
    )
    return report.body(model_name=MANIFEST.name, model_version=version, stream="imu")


@dataclass
class Fleet:
    client: TestClient
    database: Database
    headers: dict[str, str]
    parts: list[DriftCounts]


def ingest(database: Database, device: str, message_id: int, body: dict[str, Any]) -> None:
    envelope = make_envelope(device, "drift", body, message_id=message_id)
    database.ingest([envelope_to_message(envelope, received_at=time.time())], result_bucket_s=60)


def fleet_with(
    kind: str, tmp_path: Path, references: list[Path], reports: list[tuple[str, DriftCounts]] | None = None
) -> Iterator[Fleet]:
    """A controller over a fresh database holding ``reports`` (device, counts), each made into a
    body by the agent's code; by default three spans of the recording of different lengths, the
    last one with acc_y offset by a reference std."""
    with throwaway_database(kind, tmp_path) as (database, db_config):
        config = ControllerConfig(database=db_config, drift=FleetDriftConfig(reference_bundles=references))
        if reports is None:
            faulty = RECORDING[2500:].copy()
            faulty[:, 1] += PROFILE.channels[1].std if PROFILE is not None else 0.0
            parts = [counted(RECORDING[:1000], 1), counted(RECORDING[1000:2500], 2), counted(faulty, 3)]
            reports = [("dev-a", parts[0]), ("dev-a", parts[1]), ("dev-b", parts[2])]
        for index, (device, counts) in enumerate(reports):
            ingest(database, device, index + 1, report_body(counts, index))
        parts = [counts for _, counts in reports]
        context = ControllerContext(
            config=config,
            database=database,
            commands=CommandService(database, lambda topic, payload: None),
            changes=FleetChanges(),
        )
        headers = {"Authorization": f"Bearer {create_token(database, 'read', 'viewer')}"}
        with TestClient(create_app(context)) as client:
            yield Fleet(client, database, headers, parts)


@pytest.fixture(params=DB_KINDS)
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_with(request.param, tmp_path, [MODELS_DIR / "bundles"])


def channels_of(group: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in group["channels"]}


def assert_scores_equal(group: dict[str, Any], expected: DriftCounts) -> None:
    assert PROFILE is not None
    truth = score_counts(PROFILE, expected, LABELS)
    merged = channels_of(group)
    for score in truth.channels:
        got = merged[score.name]
        assert got["samples"] == score.samples
        for metric in ("psi", "js", "ks"):
            assert got[metric] == pytest.approx(getattr(score, metric), rel=1e-9, abs=1e-12)
        # std is rebuilt from each report's mean/std and the moments summed in another order:
        # equal to round-off, not bit for bit.
        for metric in ("scale", "swap"):
            assert got[metric] == pytest.approx(getattr(score, metric), rel=1e-6, abs=1e-9)
        assert got["swap_with"] == score.swap_with
        assert got["mean"] == pytest.approx(score.mean, rel=1e-6, abs=1e-9)
        assert got["std"] == pytest.approx(score.std, rel=1e-6, abs=1e-9)
    assert truth.outputs is not None
    assert group["outputs"]["classes"] == [truth.outputs.classes[label] for label in LABELS]
    assert group["outputs"]["class_psi"] == pytest.approx(truth.outputs.class_psi)
    assert group["outputs"]["confidence_psi"] == pytest.approx(truth.outputs.confidence_psi)


def test_fleet_drift_is_the_score_of_the_concatenated_data(fleet: Fleet) -> None:
    response = fleet.client.get(
        "/api/fleet/drift", params={"model_version": MANIFEST.version, "since": -3600}, headers=fleet.headers
    )
    assert response.status_code == 200, response.text
    [group] = response.json()["groups"]
    assert group["scored"] is True
    assert group["reason"] is None
    assert group["reports"] == 3
    assert group["devices"] == ["dev-a", "dev-b"]
    faulty = RECORDING[2500:].copy()
    assert PROFILE is not None
    faulty[:, 1] += PROFILE.channels[1].std
    # One pass over the concatenated data, without any report boundary.
    concatenated = counted(np.concatenate([RECORDING[:2500], faulty]), 0)
    # The outputs were random per report: take them as reported.
    concatenated.classes = np.sum([p.classes for p in fleet.parts], axis=0)
    concatenated.confidence = np.sum([p.confidence for p in fleet.parts], axis=0)
    assert np.array_equal(concatenated.bins, sum(p.bins for p in fleet.parts))
    assert_scores_equal(group, concatenated)
    # An average of the three reports' PSI is not the merged PSI (it weighs short reports too much).
    reports = fleet.client.get("/api/devices/dev-a/drift", params={"since": 0}, headers=fleet.headers).json()
    reports += fleet.client.get("/api/devices/dev-b/drift", params={"since": 0}, headers=fleet.headers).json()
    averaged = np.mean(
        [next(c["psi"] for c in r["details"]["channels"] if c["channel"] == "acc_y") for r in reports]
    )
    assert channels_of(group)["acc_y"]["psi"] != pytest.approx(averaged, rel=0.01)
    # Live and reference histograms for the panel: ten deciles each, each summing to one.
    acc_y = channels_of(group)["acc_y"]
    assert len(acc_y["live"]) == len(acc_y["reference"]) == 10
    assert sum(acc_y["live"]) == pytest.approx(1.0)
    assert sum(acc_y["reference"]) == pytest.approx(1.0)


def test_per_device_and_time_range_merge_only_their_reports(fleet: Fleet) -> None:
    response = fleet.client.get("/api/devices/dev-a/drift/merged", params={"since": 0}, headers=fleet.headers)
    assert response.status_code == 200, response.text
    [group] = response.json()["groups"]
    assert group["devices"] == ["dev-a"]
    assert group["reports"] == 2
    assert_scores_equal(group, fleet.parts[0] + fleet.parts[1])
    # Only the third report's window_end (NOW - 450) is at or after this.
    later = fleet.client.get("/api/fleet/drift", params={"since": NOW - 460}, headers=fleet.headers).json()
    [only] = later["groups"]
    assert only["devices"] == ["dev-b"]
    assert_scores_equal(only, fleet.parts[2])
    assert "acc_y" in {c["name"] for c in only["channels"] if c["over"]}
    assert fleet.client.get("/api/devices/nope/drift/merged", headers=fleet.headers).status_code == 404
    assert fleet.client.get("/api/fleet/drift").status_code == 401


def test_version_1_reports_are_kept_but_not_merged(fleet: Fleet) -> None:
    ingest(
        fleet.database,
        "dev-c",
        1,
        {
            "model_name": MANIFEST.name,
            "model_version": MANIFEST.version,
            "window_start": NOW - 100,
            "window_end": NOW - 90,
            "channels": [{"channel": "acc_x", "mean": 0.1, "std": 1.0, "psi": 0.02}],
            "psi": 0.02,
        },
    )
    stored = fleet.client.get("/api/devices/dev-c/drift", params={"since": 0}, headers=fleet.headers).json()
    assert [r["score"] for r in stored] == [0.02]
    [group] = fleet.client.get("/api/fleet/drift", params={"since": 0}, headers=fleet.headers).json()[
        "groups"
    ]
    assert group["reports"] == 3
    assert "dev-c" not in group["devices"]


def test_reports_that_cannot_merge_are_left_out_and_counted(fleet: Fleet) -> None:
    body = report_body(fleet.parts[0], 5)
    body["channels"][0]["bins"] = body["channels"][0]["bins"][:-1]  # one bin short: not mergeable
    ingest(fleet.database, "dev-d", 1, body)
    stored = fleet.client.get("/api/devices/dev-d/drift", params={"since": 0}, headers=fleet.headers).json()
    assert len(stored) == 1  # kept, with its scores
    [group] = fleet.client.get("/api/fleet/drift", params={"since": 0}, headers=fleet.headers).json()[
        "groups"
    ]
    assert "dev-d" not in group["devices"]


@pytest.mark.parametrize("kind", ["sqlite"])
def test_without_a_reference_the_merge_is_shown_unscored_with_the_reason(kind: str, tmp_path: Path) -> None:
    for fleet in fleet_with(kind, tmp_path, []):
        [group] = fleet.client.get("/api/fleet/drift", params={"since": 0}, headers=fleet.headers).json()[
            "groups"
        ]
        assert group["scored"] is False
        assert "reference_bundles" in group["reason"]
        acc_x = channels_of(group)["acc_x"]
        assert acc_x["psi"] is None
        assert acc_x["reference"] is None
        merged = fleet.parts[0] + fleet.parts[1] + fleet.parts[2]
        assert acc_x["samples"] == int(merged.samples[0])
        assert acc_x["mean"] == pytest.approx(merged.sums[0] / merged.samples[0], rel=1e-6)


@pytest.mark.parametrize("kind", DB_KINDS)
def test_a_database_of_schema_1_migrates_and_keeps_its_drift_reports(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefleet.controller.dal import open_database, sql_base
    from edgefleet.controller.dal.migrations import MIGRATIONS

    with monkeypatch.context() as patch:
        patch.setattr(sql_base, "MIGRATIONS", MIGRATIONS[:1])
        with throwaway_database(kind, tmp_path) as (old, config):
            assert old.schema_version() == 1
            # The schema 1 insert, as the controller before this change wrote it.
            with old._tx() as conn:  # type: ignore[attr-defined]
                conn.run(
                    "INSERT INTO drift_reports (device_id, ts, received_at, drifted, score, details)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    ("dev-old", NOW - 5, NOW, 1, 0.3, "{}"),
                )
            patch.undo()
            database = open_database(config)
            try:
                assert database.schema_version() == max(v for v, _, _ in MIGRATIONS)
                [kept] = database.drift_reports("dev-old", since=0)
                assert kept.score == 0.3
                ingest(database, "dev-new", 1, report_body(counted(RECORDING[:500], 4), 0))
                [row] = database.drift_counts(since=0, until=NOW + 10)
                assert row.device_id == "dev-new"
                assert row.model_version == MANIFEST.version
                assert decode_bins(row.counts["bins"]).sum(axis=1).tolist() == [500] * 6
            finally:
                database.close()


def faulted(samples: np.ndarray, fault: str) -> np.ndarray:
    """The recording with a realistic wiring fault: acc_y's gain x1.5, or acc_x and gyr_x swapped."""
    out = samples.copy()
    if fault == "gain":
        out[:, 1] *= 1.5
    else:
        out[:, [0, 3]] = out[:, [3, 0]]
    return out


@pytest.mark.parametrize("kind", DB_KINDS)
def test_a_device_with_a_gain_shows_scale_over_in_the_fleet_drift(kind: str, tmp_path: Path) -> None:
    reports = [
        ("dev-a", counted(RECORDING[:2000], 1)),
        ("dev-a", counted(RECORDING[2000:], 2)),
        ("dev-g", counted(faulted(RECORDING[:2000], "gain"), 3)),
        ("dev-g", counted(faulted(RECORDING[2000:], "gain"), 4)),
    ]
    for fleet in fleet_with(kind, tmp_path, [MODELS_DIR / "bundles"], reports):
        response = fleet.client.get("/api/fleet/drift", params={"since": 0}, headers=fleet.headers)
        assert response.status_code == 200, response.text
        [group] = response.json()["groups"]
        assert (group["reports"], group["moment_reports"]) == (4, 4)
        assert [c["name"] for c in group["channels"] if "scale" in c["over"]] == ["acc_y"]
        assert all("swap" not in c["over"] for c in group["channels"])
        assert_scores_equal(group, sum(fleet.parts[1:], fleet.parts[0]))
        [clean] = fleet.client.get(
            "/api/fleet/drift", params={"since": 0, "device_id": "dev-a"}, headers=fleet.headers
        ).json()["groups"]
        assert all("scale" not in c["over"] for c in clean["channels"])


@pytest.mark.parametrize("kind", DB_KINDS)
def test_a_device_with_swapped_axes_shows_swap_over_in_its_merged_drift(kind: str, tmp_path: Path) -> None:
    reports = [
        ("dev-a", counted(RECORDING[:2000], 1)),
        ("dev-s", counted(faulted(RECORDING[:2000], "swap"), 2)),
        ("dev-s", counted(faulted(RECORDING[2000:], "swap"), 3)),
    ]
    for fleet in fleet_with(kind, tmp_path, [MODELS_DIR / "bundles"], reports):
        # A version 2 report (an agent from before moments) merges too, without moments.
        old = report_body(counted(faulted(RECORDING[2000:3000], "swap"), 4), 3)
        old["drift_version"], old["moments"] = 2, None
        ingest(fleet.database, "dev-s", 9, old)
        response = fleet.client.get(
            "/api/devices/dev-s/drift/merged", params={"since": 0}, headers=fleet.headers
        )
        assert response.status_code == 200, response.text
        [group] = response.json()["groups"]
        assert (group["reports"], group["moment_reports"]) == (3, 2)
        swapped = {c["name"]: c["swap_with"] for c in group["channels"] if "swap" in c["over"]}
        assert swapped == {"acc_x": "gyr_x", "gyr_x": "acc_x"}
        # swap from the two version 3 reports' moments; every other statistic from all three.
        expected = fleet.parts[1] + fleet.parts[2]
        assert PROFILE is not None
        truth = score_counts(PROFILE, expected, LABELS)
        for got, want in zip(group["channels"], truth.channels, strict=True):
            assert got["swap"] == pytest.approx(want.swap, rel=1e-6, abs=1e-9)
        assert group["channels"][0]["samples"] == 4000 + 1000
        # Fleet-wide, a third of the data is clean: the live correlations sit between the two
        # wirings and the swap is diluted under its threshold (docs/drift.md, Fleet), but an
        # accelerometer axis swapped with a gyroscope axis still shows, as both channels' scale.
        [fleet_group] = fleet.client.get(
            "/api/fleet/drift", params={"since": 0}, headers=fleet.headers
        ).json()["groups"]
        assert fleet_group["moment_reports"] == 3
        assert all("swap" not in c["over"] for c in fleet_group["channels"])
        assert [c["name"] for c in fleet_group["channels"] if "scale" in c["over"]] == ["acc_x", "gyr_x"]
