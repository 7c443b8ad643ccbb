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
    drift_counts_of,
    encode_bins,
    merge_drift,
)
from edgefleet.controller.drift_references import DriftReferences
from edgefleet.controller.ingest import envelope_to_message
from edgefleet.errors import ConfigError
from edgefleet.runtime.bundle_manifest import parse_manifest
from edgefleet.runtime.drift_cross import pack_moments
from edgefleet.runtime.drift_stats import BinCounter, DriftCounts, score_counts
from tests.conftest import MODELS_DIR

pytestmark = pytest.mark.unit

BUNDLES = MODELS_DIR / "bundles"
MANIFEST = parse_manifest((BUNDLES / "basicmotions-edge-tflite" / "manifest.json").read_text())
PROFILE = MANIFEST.reference
assert PROFILE is not None
NAMES = [c.name for c in PROFILE.channels]


def body_of(counts: DriftCounts, version: str = "1.0.0", *, moments: bool = False) -> dict[str, Any]:
    """A version 2 body (scores and the raw bins per channel), or with ``moments`` a version 3 one
    as the agent sends it (the cross-channel moments too)."""
    assert PROFILE is not None
    scores = score_counts(PROFILE, counts, MANIFEST.labels)
    outputs = scores.outputs
    return {
        "model_name": MANIFEST.name,
        "model_version": version,
        "window_start": 0.0,
        "window_end": 1.0,
        "drift_version": 3 if moments else 2,
        "moments": pack_moments(counts.moments) if moments and counts.moments is not None else None,
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
    rows.append(row(body_of(counted(data[::-1], ["Walking"] * 500), moments=True)))
    lenient_at = Thresholds(psi=1e9, js=1, ks=1, scale=1e9, swap=1e9)
    strict_at = Thresholds(psi=1e-9, js=1e-9, ks=1e-9, scale=1e-9, swap=1e-9)
    [lenient] = merge_drift(rows, references, lenient_at, since=0, until=2).groups
    [strict] = merge_drift(rows, references, strict_at, since=0, until=2).groups
    assert all(c.over == [] for c in lenient.channels)
    for c in strict.channels:
        assert c.scale is not None
        assert c.swap is not None
        cross = [m for m, v in (("scale", c.scale), ("swap", c.swap)) if v > 1e-9]
        assert c.over == ["psi", "js", "ks", *cross]
    assert any("scale" in c.over for c in strict.channels)


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


def correlated(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Samples with the reference's means, stds and correlations (a clean device)."""
    assert PROFILE is not None
    assert PROFILE.correlation is not None
    means = np.array([c.mean for c in PROFILE.channels])
    stds = np.array([c.std for c in PROFILE.channels])
    corr = np.asarray(PROFILE.correlation) + 1e-9 * np.eye(len(NAMES))
    normal = rng.normal(size=(rows, len(NAMES))) @ np.linalg.cholesky(corr).T
    samples: np.ndarray = means + normal * stds
    return samples


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 599), max_size=5, unique=True),
    seed=st.integers(0, 2**16),
    gain=st.floats(0.5, 3.0),
    fault=st.sampled_from(["none", "gain", "swap"]),
)
def test_merging_version_3_bodies_scores_scale_and_swap_like_the_concatenated_data(
    cuts: list[int], seed: int, gain: float, fault: str
) -> None:
    assert PROFILE is not None
    rng = np.random.default_rng(seed)
    data = correlated(rng, 600)
    if fault == "gain":
        data[:, 1] *= gain
    elif fault == "swap":
        data[:, [3, 4]] = data[:, [4, 3]]
    labels = list(rng.choice(MANIFEST.labels, 600))
    bounds = [0, *sorted(cuts), 600]
    rows = [
        row(body_of(counted(data[a:b], labels[a:b]), moments=True))
        for a, b in itertools.pairwise(bounds)
        if b > a
    ]
    [group] = merge_drift(rows, references, Thresholds(), since=0, until=2).groups
    truth = score_counts(PROFILE, counted(data, labels), MANIFEST.labels)
    assert group.moment_reports == len(rows)
    for got, want in zip(group.channels, truth.channels, strict=True):
        assert want.scale is not None
        assert want.swap is not None
        assert got.scale == pytest.approx(want.scale, rel=1e-6, abs=1e-9)
        assert got.swap == pytest.approx(want.swap, rel=1e-6, abs=1e-9)
        assert got.swap_with == want.swap_with
        for metric, value, limit in (("scale", want.scale, 0.2), ("swap", want.swap, 0.3)):
            assert (metric in got.over) == (value > limit)


def test_a_gain_shows_fleet_wide_and_a_swap_in_its_device_s_merge() -> None:
    rng = np.random.default_rng(11)
    walking = ["Walking"] * 2000
    clean = [
        row(body_of(counted(correlated(rng, 2000), walking), moments=True), device=f"d{i}") for i in range(2)
    ]
    gained = correlated(rng, 2000)
    gained[:, 1] *= 3.0
    swapped = correlated(rng, 2000)
    swapped[:, [0, 3]] = swapped[:, [3, 0]]
    [base] = merge_drift(clean, references, Thresholds(), since=0, until=2).groups
    assert all("scale" not in c.over and "swap" not in c.over for c in base.channels)
    fault = row(body_of(counted(gained, walking), moments=True), device="bad")
    [group] = merge_drift([*clean, fault], references, Thresholds(), since=0, until=2).groups
    assert [c.name for c in group.channels if "scale" in c.over] == [NAMES[1]]
    fault = row(body_of(counted(swapped, walking), moments=True), device="bad")
    [alone] = merge_drift([fault], references, Thresholds(), since=0, until=2).groups
    assert [c.name for c in alone.channels if "swap" in c.over] == [NAMES[0], NAMES[3]]
    assert (alone.channels[0].swap_with, alone.channels[3].swap_with) == (NAMES[3], NAMES[0])
    # Merged with as much clean data, the live correlations sit halfway between the two wirings:
    # neither fits better, so a fleet-wide merge dilutes a one-device swap (docs/drift.md, Fleet).
    [diluted] = merge_drift([clean[0], fault], references, Thresholds(), since=0, until=2).groups
    assert all("swap" not in c.over for c in diluted.channels)


def test_version_2_reports_merge_with_version_3_ones_and_swap_counts_only_those_with_moments() -> None:
    assert PROFILE is not None
    rng = np.random.default_rng(4)
    old_data, new_data = correlated(rng, 700), correlated(rng, 500)
    new_data[:, [2, 5]] = new_data[:, [5, 2]]
    walking = ["Walking"] * 700
    rows = [
        row(body_of(counted(old_data, walking))),
        row(body_of(counted(new_data, walking[:500]), moments=True)),
    ]
    [group] = merge_drift(rows, references, Thresholds(), since=0, until=2).groups
    assert (group.reports, group.moment_reports) == (2, 1)
    everything = score_counts(PROFILE, counted(np.concatenate([old_data, new_data]), walking + walking[:500]))
    only_new = score_counts(PROFILE, counted(new_data, walking[:500]))
    for got, all_of, new in zip(group.channels, everything.channels, only_new.channels, strict=True):
        assert got.samples == 1200
        assert got.scale == pytest.approx(all_of.scale, rel=1e-6, abs=1e-9)
        assert got.swap == pytest.approx(new.swap, rel=1e-9, abs=1e-12)
    [old_only] = merge_drift(rows[:1], references, Thresholds(), since=0, until=2).groups
    assert old_only.moment_reports == 0
    assert all(c.swap is None and c.scale is not None for c in old_only.channels)


def test_moments_that_do_not_fit_are_refused_or_left_out() -> None:
    body = body_of(counted(np.zeros((50, len(NAMES))), ["Walking"] * 50), moments=True)
    with pytest.raises(ValueError, match="do not fit"):
        DriftBody.model_validate({**body, "moments": body["moments"][:-1]})
    with pytest.raises(ValueError, match="drift_version 3"):
        DriftBody.model_validate({**body, "drift_version": 2})
    bad = {**body, "moments": [float("nan"), *body["moments"][1:]]}
    counts = counts_of_body(DriftBody.model_validate(bad))
    assert counts is not None
    assert "moments" not in counts
    good = counts_of_body(DriftBody.model_validate(body))
    assert good is not None
    counts_back = drift_counts_of(good)
    assert counts_back.moments is not None
    assert pack_moments(counts_back.moments) == body["moments"]  # stored as float64: exact
    # Stored moments that do not decode leave the report out of the merge, counted.
    broken = DriftCountsRow("dev", 1.0, MANIFEST.name, "1.0.0", {**good, "moments": {"f64_b64": "AAAA"}})
    [group] = merge_drift([broken, row(body)], references, Thresholds(), since=0, until=2).groups
    assert (group.reports, group.skipped_reports, group.moment_reports) == (1, 1, 1)
