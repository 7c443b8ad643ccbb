"""The committed smartwatch exercise data, fallback models and bundles, run through the real runtimes.

Accuracies are recomputed here from the shipped test split (subjects 9 and 10) and compared with
``models/demo/watch_metrics.json``, which the build script measured the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.bundle_verify import verify_bundle

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"
BUNDLES = MODELS / "bundles"
WATCH_BUNDLES = {
    "watch-edge-tflite": "edge_tflite_int8",
    "watch-edge-onnx": "edge_onnx_int8",
    "watch-cloud": "cloud_fp32",
}


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    # No allow_pickle: the committed copy must be plain arrays.
    with np.load(MODELS / "data" / "watch.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MODELS / "demo" / "watch_metrics.json").read_text())
    return loaded


def _test_windows(
    data: dict[str, Any], length: int, hop: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The held-out recordings cut as the agent would: every ``hop`` samples, ``length`` long."""
    offsets = data["offsets"]
    xs, ys = [], []
    for i in np.flatnonzero(data["test"]):
        rec = data["samples"][offsets[i] : offsets[i + 1]]
        starts = range(0, len(rec) - length + 1, hop)
        xs.append(np.stack([rec[s : s + length] for s in starts]))
        ys.append(np.full(len(starts), data["y"][i]))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def test_dataset_copy_has_the_documented_layout(data: dict[str, Any]) -> None:
    assert data["samples"].dtype == np.float32
    assert data["samples"].shape == (244102, 6)
    assert data["offsets"][0] == 0
    assert data["offsets"][-1] == len(data["samples"])
    assert len(data["offsets"]) == 141
    assert (np.diff(data["offsets"]) > 100).all()
    assert data["labels"].tolist() == ["PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW"]
    assert data["channel_names"].tolist() == ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
    assert np.bincount(data["subject"]).tolist() == [0] + [14] * 10
    assert data["test"].tolist() == np.isin(data["subject"], [9, 10]).tolist()
    assert float(data["sample_rate_hz"]) == 50.0


@pytest.mark.parametrize(("bundle_name", "metric_key"), sorted(WATCH_BUNDLES.items()))
def test_bundle_accuracy_matches_metrics(
    data: dict[str, Any], metrics: dict[str, Any], bundle_name: str, metric_key: str
) -> None:
    bundle = load_bundle(BUNDLES / bundle_name)
    prep = bundle.manifest.preprocessing
    windows, y = _test_windows(data, prep.window_length, prep.hop)
    assert len(windows) == 1002
    with bundle.open_model(threads=1) as model:
        preds = bundle.interpret(model.predict(bundle.preprocess(windows)))
    labels = bundle.manifest.labels
    accuracy = float(np.mean([labels.index(p.label or "") == t for p, t in zip(preds, y, strict=True)]))
    assert accuracy == pytest.approx(metrics["models"][metric_key]["window_accuracy"], abs=0.005)


def test_cloud_model_is_clearly_better_and_larger_than_the_edge_model(metrics: dict[str, Any]) -> None:
    m = metrics["models"]
    assert m["edge_tflite_int8"]["params"] <= 5000
    assert m["cloud_fp32"]["params"] >= 20 * m["edge_tflite_int8"]["params"]
    for edge in ("edge_tflite_int8", "edge_onnx_int8"):
        assert m["cloud_fp32"]["window_accuracy"] - m[edge]["window_accuracy"] >= 0.03
        assert m["edge_onnx_fp32"]["window_accuracy"] - m[edge]["window_accuracy"] <= 0.03
    for entry in m.values():
        assert (MODELS / "demo" / entry["file"]).stat().st_size == entry["size_bytes"] < 1_000_000


@pytest.mark.parametrize("name", sorted(WATCH_BUNDLES))
def test_watch_bundles_verify(name: str, tmp_path: Path) -> None:
    report = verify_bundle(BUNDLES / name, cache_dir=tmp_path)
    assert report.ok, report.problems
    assert [c.name for c in report.checks] == ["manifest", "files", "model", "tensors", "canary"]
    assert report.name == name


@pytest.mark.parametrize("name", ["watch-edge-fp32.onnx", "watch-edge-int8.onnx", "watch-cloud-fp32.onnx"])
def test_onnx_models_load_on_the_oldest_supported_onnxruntime(name: str) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODELS / "demo" / name))
    assert model.ir_version <= 9
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    assert opsets["ai.onnx"] <= 20
