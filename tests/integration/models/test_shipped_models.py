"""The committed BasicMotions data, demo models and bundles, run through the real runtimes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.runtime import load_model
from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.bundle_verify import verify_bundle
from tests.support.arrays import FloatOutput, float_output

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"
BUNDLES = MODELS / "bundles"
SHIPPED_BUNDLES = [
    "basicmotions-edge-tflite",
    "basicmotions-edge-tflite-1.0.0.tar",
    "basicmotions-edge-onnx",
    "basicmotions-cloud",
]


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    with np.load(MODELS / "data" / "basicmotions.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MODELS / "demo" / "metrics.json").read_text())
    return loaded


def test_dataset_copy_has_the_documented_layout(data: dict[str, Any]) -> None:
    assert data["X_train"].shape == (40, 100, 6)
    assert data["X_test"].shape == (40, 100, 6)
    assert data["X_train"].dtype == np.float32
    assert data["labels"].tolist() == ["Standing", "Running", "Walking", "Badminton"]
    assert data["channel_names"].tolist() == ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
    assert np.bincount(data["y_test"]).tolist() == [10, 10, 10, 10]


def test_replay_stream_csv_matches_npz_and_test_split(data: dict[str, Any]) -> None:
    with np.load(MODELS / "data" / "basicmotions_test_stream.npz") as s:
        stream = {k: s[k] for k in s.files}
    with (MODELS / "data" / "basicmotions_test_stream.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z", "label"]
    assert len(rows) - 1 == len(stream["samples"]) == 4000
    body = np.array([[float(v) for v in r[:7]] for r in rows[1:]])
    assert np.allclose(body[:, 0], stream["timestamp"])
    assert np.allclose(body[:, 1:], stream["samples"], atol=1e-6)
    assert [r[7] for r in rows[1:]] == [str(data["labels"][i]) for i in stream["label"]]
    # Each block of 100 samples is one test series, in the recorded order.
    order = stream["order"]
    assert sorted(order.tolist()) == list(range(40))
    assert np.array_equal(stream["samples"][:100], data["X_test"][order[0]])
    assert np.array_equal(stream["label"][::100], data["y_test"][order])


def _test_windows(data: dict[str, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x = data["X_test"]
    starts = range(0, 100 - 50 + 1, 10)
    windows = np.stack([x[:, s : s + 50] for s in starts], axis=1).reshape(-1, 50, 6)
    return windows.astype(np.float32), np.repeat(data["y_test"], len(starts))


@pytest.mark.parametrize(
    ("bundle_name", "metric_key"),
    [
        ("basicmotions-edge-tflite", "tflite_int8"),
        ("basicmotions-edge-onnx", "onnx_int8"),
        ("basicmotions-cloud", "cloud_fp32"),
    ],
)
def test_bundle_accuracy_matches_metrics(
    data: dict[str, Any], metrics: dict[str, Any], bundle_name: str, metric_key: str
) -> None:
    bundle = load_bundle(BUNDLES / bundle_name)
    windows, y = _test_windows(data)
    with bundle.open_model(threads=1) as model:
        preds = bundle.interpret(model.predict(bundle.preprocess(windows)))
    labels = bundle.manifest.labels
    accuracy = float(np.mean([labels.index(p.label or "") == t for p, t in zip(preds, y, strict=True)]))
    assert accuracy >= 0.8
    assert accuracy == pytest.approx(metrics["models"][metric_key]["window_accuracy"], abs=0.02)
    scores = np.array([p.score for p in preds])
    assert ((scores > 0.25) & (scores <= 1.0)).all()


def test_int8_models_agree_with_fp32(data: dict[str, Any], metrics: dict[str, Any]) -> None:
    windows, _ = _test_windows(data)
    bundle = load_bundle(BUNDLES / "basicmotions-edge-onnx")
    x = bundle.preprocess(windows)
    outs: dict[str, FloatOutput] = {}
    for name in ("basicmotions-fp32.onnx", "basicmotions-int8.onnx", "basicmotions-int8.tflite"):
        with load_model(MODELS / "demo" / name, threads=1) as model:
            (output,) = model.predict(x).values()
            outs[name] = float_output(output)
    fp32 = outs["basicmotions-fp32.onnx"]
    fp32_acc = metrics["models"]["onnx_fp32"]["window_accuracy"]
    for name, key in (("basicmotions-int8.onnx", "onnx_int8"), ("basicmotions-int8.tflite", "tflite_int8")):
        agreement = float(np.mean(outs[name].argmax(1) == fp32.argmax(1)))
        assert agreement >= 0.95, name
        assert np.abs(outs[name] - fp32).max() < 0.1, name
        assert fp32_acc - metrics["models"][key]["window_accuracy"] <= 0.03


def test_cloud_model_is_larger_than_the_edge_model(metrics: dict[str, Any]) -> None:
    m = metrics["models"]
    assert 5 <= m["cloud_fp32"]["params"] / m["onnx_fp32"]["params"] <= 20
    for entry in m.values():
        assert (MODELS / "demo" / entry["file"]).stat().st_size == entry["size_bytes"] < 1_000_000


@pytest.mark.parametrize("name", SHIPPED_BUNDLES)
def test_shipped_bundles_verify(name: str, tmp_path: Path) -> None:
    report = verify_bundle(BUNDLES / name, cache_dir=tmp_path)
    assert report.ok, report.problems
    assert [c.name for c in report.checks] == ["manifest", "files", "model", "tensors", "canary"]
    assert report.name is not None
    assert name.startswith(report.name)


@pytest.mark.parametrize(
    "name", ["basicmotions-fp32.onnx", "basicmotions-int8.onnx", "basicmotions-cloud-fp32.onnx"]
)
def test_onnx_models_load_on_the_oldest_supported_onnxruntime(name: str) -> None:
    # pyproject allows onnxruntime >= 1.17, which reads IR version <= 9 and ai.onnx opset <= 20.
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODELS / "demo" / name))
    assert model.ir_version <= 9
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    assert opsets["ai.onnx"] <= 20
    assert set(opsets) <= {"ai.onnx", "com.microsoft"}
