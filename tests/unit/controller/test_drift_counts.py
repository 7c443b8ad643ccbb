"""Fleet drift's pure parts: counts from a report body, merging by addition, references, config."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.cloud_sync.protocol import DriftBody, make_envelope
from edgefleet.controller.config import load_controller_config
from edgefleet.controller.drift_counts import (
    DriftCountsRow,
    Thresholds,
    counts_of_body,
    decode_bins,
    encode_bins,
    merge_drift,
)
from edgefleet.controller.drift_references import DriftReferences
from edgefleet.controller.ingest import envelope_to_message
from edgefleet.errors import ConfigError
from edgefleet.runtime.bundle_manifest import parse_manifest
from edgefleet.runtime.drift_stats import BinCounter, DriftCounts, score_counts
from tests.conftest import MODELS_DIR

pytestmark = pytest.mark.unit

BUNDLES = MODELS_DIR / "bundles"
MANIFEST = parse_manifest((BUNDLES / "basicmotions-edge-tflite" / "manifest.json").read_text())
PROFILE = MANIFEST.reference
assert PROFILE is not None
NAMES = [c.name for c in PROFILE.channels]


def body_of(counts: DriftCounts, version: str = "1.0.0") -> dict[str, Any]:
    """A version 2 body as the agent sends it (scores and the raw bins per channel)."""
    assert PROFILE is not None
    scores = score_counts(PROFILE, counts, MANIFEST.labels)
    outputs = scores.outputs
    return {
        "model_name": MANIFEST.name,
        "model_version": version,
        "window_start": 0.0,
        "window_end": 1.0,
        "drift_version": 2,
        "channels": [
            {
                "channel": c.name,
                "mean": c.mean,
                "std": c.std,
                "psi": c.psi,
                "samples": c.samples,
                "nonfinite": c.nonfinite,
                "bins": c.bins,
            }
            for c in scores.channels
        ],
        "outputs": None
        if outputs is None
        else {"windows": outputs.windows, "classes": outputs.classes, "confidence": outputs.confidence},
    }


def counted(samples: np.ndarray, labels: list[str]) -> DriftCounts:
    assert PROFILE is not None
    counter = BinCounter(PROFILE, MANIFEST.labels)
    counter.add_samples(samples)
    counter.add_outputs(labels, np.full(len(labels), 0.8))
    return counter.take()


def row(body: dict[str, Any], device: str = "dev", ts: float = 1.0) -> DriftCountsRow:
    counts = counts_of_body(DriftBody.model_validate(body))
    assert counts is not None
    return DriftCountsRow(device, ts, body["model_name"], body["model_version"], counts)


def references(name: str | None, version: str | None) -> Any:
    return PROFILE if (name, version) == (MANIFEST.name, "1.0.0") else None


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 399), max_size=5, unique=True),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.5, 3.0),
)
def test_merging_report_bodies_scores_like_the_concatenated_data(
    cuts: list[int], seed: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    assert PROFILE is not None
    means = np.array([c.mean for c in PROFILE.channels])
    stds = np.array([c.std for c in PROFILE.channels])
    data = means + rng.normal(0.0, 1.0, (400, len(NAMES))) * stds * scale
    labels = list(rng.choice(MANIFEST.labels, 400))
    bounds = [0, *sorted(cuts), 400]
    rows = [row(body_of(counted(data[a:b], labels[a:b]))) for a, b in itertools.pairwise(bounds) if b > a]
    [group] = merge_drift(rows, references, Thresholds(), since=0, until=2).groups
    truth = score_counts(PROFILE, counted(data, labels), MANIFEST.labels)
    for got, want in zip(group.channels, truth.channels, strict=True):
        assert got.samples == want.samples
        assert got.psi == pytest.approx(want.psi, rel=1e-9)
        assert got.js == pytest.approx(want.js, rel=1e-9)
        assert got.ks == pytest.approx(want.ks, rel=1e-9, abs=1e-12)
        assert got.mean == pytest.approx(want.mean, rel=1e-6, abs=1e-9)
        assert got.std == pytest.approx(want.std, rel=1e-6, abs=1e-9)
    assert group.outputs is not None
    assert truth.outputs is not None
    assert group.outputs.classes == list(truth.outputs.classes.values())
    assert group.outputs.class_psi == pytest.approx(truth.outputs.class_psi)


def test_versions_merge_apart_and_misfits_are_counted_not_mixed() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(300, len(NAMES)))
    labels = list(rng.choice(MANIFEST.labels, 300))
    good = body_of(counted(data, labels))
    other_version = body_of(counted(data, labels), version="2.0.0")
    renamed = body_of(counted(data, labels))
    renamed["channels"][0]["channel"] = "acc_q"
    rows = [row(good), row(other_version), row(renamed, device="dev-x")]
    groups = merge_drift(rows, references, Thresholds(), since=0, until=2).groups
    assert [(g.model_version, g.reports, g.skipped_reports, g.scored) for g in groups] == [
        ("1.0.0", 1, 1, True),
        ("2.0.0", 1, 0, False),
    ]
    assert "reference_bundles" in (groups[1].reason or "")
    assert groups[1].channels[0].reference is None
    assert groups[0].devices == ["dev"]


def test_thresholds_decide_what_is_listed_over() -> None:
    rng = np.random.default_rng(2)
    data = rng.normal(size=(500, len(NAMES)))
    rows = [row(body_of(counted(data, list(rng.choice(MANIFEST.labels, 500)))))]
    [lenient] = merge_drift(rows, references, Thresholds(psi=1e9, js=1, ks=1), since=0, until=2).groups
    [strict] = merge_drift(rows, references, Thresholds(psi=1e-9, js=1e-9, ks=1e-9), since=0, until=2).groups
    assert all(c.over == [] for c in lenient.channels)
    assert all(c.over == ["psi", "js", "ks"] for c in strict.channels)


def test_version_1_and_unmergeable_bodies_have_no_counts() -> None:
    v1 = DriftBody.model_validate({"window_start": 0, "window_end": 1, "psi": 0.2, "channels": []})
    assert counts_of_body(v1) is None
    body = body_of(counted(np.zeros((50, len(NAMES))), ["Walking"] * 50))
    body["channels"][1]["bins"] = body["channels"][1]["bins"][:-1]
    assert counts_of_body(DriftBody.model_validate(body)) is None
    body = body_of(counted(np.zeros((50, len(NAMES))), ["Walking"] * 50))
    body["channels"][1]["bins"][0] = -1
    assert counts_of_body(DriftBody.model_validate(body)) is None


def test_ingest_keeps_the_counts_once_and_the_scores_in_details() -> None:
    body = body_of(counted(np.ones((80, len(NAMES))), ["Running"] * 80))
    message = envelope_to_message(make_envelope("dev", "drift", body, message_id=3), received_at=10.0)
    [item] = message.drift
    assert item.model_version == "1.0.0"
    assert item.counts is not None
    stored: dict[str, Any] = json.loads(json.dumps(item.counts))
    assert decode_bins(stored["bins"]).sum(axis=1).tolist() == [80] * len(NAMES)
    channels = item.details["channels"]
    assert isinstance(channels, list)
    assert all(isinstance(c, dict) and "bins" not in c and "psi" in c for c in channels)


def test_references_load_every_bundle_and_name_what_they_skip(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        found = DriftReferences([BUNDLES, tmp_path, tmp_path / "missing"])
    assert (MANIFEST.name, "1.0.0") in found.known
    assert found(MANIFEST.name, "1.0.0") is not None
    assert found(MANIFEST.name, "9.9.9") is None
    assert found(None, None) is None
    assert any("damaged" in p and "skipped" in p for p in found.problems)
    assert any("missing" in p and "not a directory" in p for p in found.problems)
    assert len(caplog.records) == len(found.problems)


def test_drift_config_resolves_paths_against_the_file_and_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('[drift]\nreference_bundles = ["bundles"]\npsi_threshold = 0.2\n')
    config = load_controller_config(path)
    assert config.drift.reference_bundles == [(tmp_path / "bundles").resolve()]
    assert config.drift.thresholds.psi == 0.2
    path.write_text("[drift]\nreference_bundle = []\n")
    with pytest.raises(ConfigError) as info:
        load_controller_config(path)
    assert "reference_bundle" in str(info.value) + " ".join(str(i) for i in getattr(info.value, "issues", []))


def test_stored_bins_round_trip_and_damage_is_an_error() -> None:
    bins = [[0, 1, 2**31 + 5], [7, 0, 0]]
    stored = encode_bins(bins)
    assert decode_bins(json.loads(json.dumps(stored))).tolist() == bins
    with pytest.raises(ValueError, match="do not fit"):
        decode_bins({**stored, "shape": [2, 4]})
    damaged = DriftCountsRow(
        "dev", 1.0, MANIFEST.name, "1.0.0", {"bins": {"shape": [6, 100], "u32_zlib_b64": "!!"}}
    )
    [group] = merge_drift([damaged], references, Thresholds(), since=0, until=2).groups
    assert (group.reports, group.skipped_reports) == (0, 1)
