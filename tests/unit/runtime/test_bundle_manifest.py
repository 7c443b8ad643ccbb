"""Manifest validation and the reference-profile statistics (pure logic)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edgefleet.cli.bundle import TASKS
from edgefleet.errors import BundleError
from edgefleet.runtime.bundle_manifest import BundleManifest, Task, manifest_bytes, parse_manifest
from edgefleet.runtime.profile import (
    ChannelProfile,
    histogram,
    output_profile,
    population_stability_index,
    reference_profile,
)

pytestmark = pytest.mark.unit

SHA = "a" * 64


def manifest_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "demo",
        "version": "1.2.3",
        "task": "classification",
        "created_at": "2026-11-23T00:00:00Z",
        "model": {"path": "model.onnx", "sha256": SHA, "size_bytes": 10, "format": "onnx"},
        "inputs": [{"name": "window", "shape": [None, 4, 2], "dtype": "float32"}],
        "outputs": [{"name": "probabilities", "shape": [None, 2], "dtype": "float32"}],
        "labels": ["a", "b"],
        "preprocessing": {
            "window_length": 4,
            "hop": 2,
            "channels": 2,
            "channel_names": ["x", "y"],
            "sample_rate_hz": 10.0,
            "mean": [0.0, 1.0],
            "std": [1.0, 2.0],
        },
        "canary_file": {"path": "canary.npz", "sha256": SHA, "size_bytes": 5},
        "canary": [
            {"index": 0, "expected": {"probabilities": [0.9, 0.1]}, "expected_label": "a", "tolerance": 0.01}
        ],
    }
    data.update(overrides)
    return data


def parse(data: dict[str, Any]) -> BundleManifest:
    return parse_manifest(json.dumps(data))


def problems_of(data: dict[str, Any]) -> str:
    with pytest.raises(BundleError) as info:
        parse(data)
    assert info.value.hint
    return "\n".join(info.value.problems) or info.value.message


def test_valid_manifest_round_trips_through_canonical_bytes() -> None:
    m = parse(manifest_dict())
    again = parse_manifest(manifest_bytes(m).decode())
    assert again == m
    assert manifest_bytes(again) == manifest_bytes(m)


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0.0", "", "latest"])
def test_bad_semver_is_rejected(version: str) -> None:
    text = problems_of(manifest_dict(version=version))
    assert "version" in text
    assert "semantic version" in text


@pytest.mark.parametrize("version", ["0.0.1", "1.0.0-rc.1", "2.10.3+build.7"])
def test_good_semver_is_accepted(version: str) -> None:
    assert parse(manifest_dict(version=version)).version == version


def test_channel_count_mismatch_names_each_list() -> None:
    data = manifest_dict()
    data["preprocessing"]["mean"] = [0.0, 1.0, 2.0]
    data["preprocessing"]["channel_names"] = ["x"]
    text = problems_of(data)
    assert "mean has 3 entries" in text
    assert "channel_names has 1 entries" in text
    assert "channels = 2" in text


def test_zero_std_is_rejected() -> None:
    data = manifest_dict()
    data["preprocessing"]["std"] = [1.0, 0.0]
    assert "std must be finite and > 0" in problems_of(data)


def test_unknown_keys_are_reported_at_every_level() -> None:
    data = manifest_dict(extra_field=1)
    data["preprocessing"]["normalise"] = True
    text = problems_of(data)
    assert "extra_field: unknown key" in text
    assert "preprocessing.normalise: unknown key" in text


def test_every_problem_is_listed_at_once() -> None:
    data = manifest_dict(version="x", task="segmentation")
    del data["model"]
    with pytest.raises(BundleError) as info:
        parse(data)
    locs = {p.split(":")[0] for p in info.value.problems}
    assert {"version", "task", "model"} <= locs


def test_unsupported_schema_version() -> None:
    with pytest.raises(BundleError, match="schema_version 4 is not supported"):
        parse(manifest_dict(schema_version=4))


def test_invalid_json() -> None:
    with pytest.raises(BundleError, match="not valid JSON"):
        parse_manifest("{not json")


@pytest.mark.parametrize("path", ["../model.onnx", "/etc/passwd", "sub/model.onnx", "a\\b.onnx", ""])
def test_file_paths_must_stay_inside_the_bundle(path: str) -> None:
    data = manifest_dict()
    data["model"]["path"] = path
    assert "model.path" in problems_of(data)


def test_bad_sha256() -> None:
    data = manifest_dict()
    data["model"]["sha256"] = "ABC"
    assert "model.sha256" in problems_of(data)


def test_classification_needs_labels_and_canary_labels_must_exist() -> None:
    assert "needs labels" in problems_of(manifest_dict(labels=[], canary=[], canary_file=None))
    data = manifest_dict()
    data["canary"][0]["expected_label"] = "zzz"
    assert "not in labels" in problems_of(data)


def test_canary_for_unknown_output_and_missing_canary_file() -> None:
    data = manifest_dict(canary_file=None)
    data["canary"][0]["expected"] = {"logits": [1.0]}
    text = problems_of(data)
    assert "unknown outputs ['logits']" in text
    assert "canary_file is missing" in text


def test_regression_needs_no_labels() -> None:
    m = parse(manifest_dict(task="regression", labels=[], canary=[], canary_file=None))
    assert m.task == "regression"


def test_cli_task_choices_mirror_the_schema() -> None:
    from typing import get_args

    assert get_args(Task) == TASKS


# ------------------------------------------------------------------------------------ profile


def test_histogram_puts_outliers_in_the_end_bins_and_ignores_nan() -> None:
    h = histogram([-100.0, 0.5, 1.5, 2.5, 100.0, float("nan")], [0.0, 1.0, 2.0, 3.0])
    assert h.tolist() == pytest.approx([0.4, 0.2, 0.4])
    assert histogram([], [0.0, 1.0]).tolist() == [0.0]
    with pytest.raises(ValueError, match="at least 2 bin edges"):
        histogram([1.0], [0.0])


def test_psi_zero_for_same_and_large_for_shifted_data() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    profile = reference_profile(ref.reshape(-1, 10, 1), ["x"], bins=10)
    edges = profile.channels[0].bin_edges
    baseline = profile.channels[0].histogram
    assert baseline == pytest.approx([0.1] * 10, abs=1e-6)
    same = population_stability_index(baseline, list(histogram(rng.normal(size=5000), edges)))
    shifted = population_stability_index(baseline, list(histogram(rng.normal(2.0, 1.0, size=5000), edges)))
    assert same < 0.02
    assert shifted > 0.5
    with pytest.raises(ValueError, match="differ in bins"):
        population_stability_index([0.5, 0.5], [1.0])


def test_reference_profile_channels_and_outputs() -> None:
    windows = np.stack([np.full((4, 2), i, dtype=np.float32) for i in range(4)])
    windows[..., 1] *= -1
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    p = reference_profile(windows, ["x", "y"], outputs={"probabilities": probs}, labels=["a", "b"], bins=4)
    x, y = p.channels
    assert (x.min, x.max, x.mean) == (0.0, 3.0, 1.5)
    assert (y.min, y.max) == (-3.0, 0.0)
    assert len(x.bin_edges) == 5
    assert p.windows == 4
    assert p.samples == 16
    assert p.outputs[0].class_distribution == {"a": 0.75, "b": 0.25}
    assert p.outputs[0].mean == pytest.approx([0.6, 0.4])
    with pytest.raises(ValueError, match="must be"):
        reference_profile(windows, ["x"])
    with pytest.raises(ValueError, match="labels"):
        output_profile("p", probs, ["a", "b", "c"])


def test_constant_channel_profile_is_valid() -> None:
    p = reference_profile(np.zeros((3, 4, 1)), ["flat"])
    assert p.channels[0].std == 0.0
    assert sum(p.channels[0].histogram) == pytest.approx(1.0)


def test_channel_profile_validation() -> None:
    with pytest.raises(ValueError, match="bins \\+ 1 edges"):
        ChannelProfile(name="x", mean=0, std=1, min=0, max=1, bin_edges=[0, 1], histogram=[0.5, 0.5])
    with pytest.raises(ValueError, match="non-decreasing"):
        ChannelProfile(name="x", mean=0, std=1, min=0, max=1, bin_edges=[0, 2, 1], histogram=[0.5, 0.5])
    with pytest.raises(ValueError, match="sums to"):
        ChannelProfile(name="x", mean=0, std=1, min=0, max=1, bin_edges=[0, 1, 2], histogram=[0.5, 0.6])


def test_a_reference_correlation_needs_schema_3_and_older_schemas_still_load() -> None:
    windows = np.random.default_rng(0).normal(size=(20, 4, 2))
    profile = reference_profile(windows, ["x", "y"], bins=4)
    assert profile.correlation is not None
    reference = profile.model_dump()
    assert parse(manifest_dict(schema_version=3, reference=reference)).reference == profile
    for old in (1, 2):
        assert "reference.correlation needs schema_version 3" in problems_of(
            manifest_dict(schema_version=old, reference=reference)
        )
        without = {**reference, "correlation": None}
        assert parse(manifest_dict(schema_version=old, reference=without)).schema_version == old
