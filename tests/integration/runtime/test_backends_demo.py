"""The shipped demo models (models/demo) through the runtime, on the real BasicMotions test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefleet.runtime import load_model
from tests.support.arrays import float_output

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "models" / "demo"
DATA = ROOT / "models" / "data" / "basicmotions.npz"
DEMO_MODELS = ["basicmotions-int8.tflite", "basicmotions-fp32.onnx", "basicmotions-int8.onnx"]
WINDOW, HOP = 50, 10


@pytest.fixture(scope="module")
def windows() -> tuple[np.ndarray, np.ndarray]:
    """Normalised test windows (N, 50, 6) and their labels, cut the way models/build_demo.py cuts them."""
    with np.load(DATA) as data:
        train, test, labels = data["X_train"], data["X_test"], data["y_test"]
    flat = train.reshape(-1, train.shape[-1])
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    starts = range(0, test.shape[1] - WINDOW + 1, HOP)
    x = np.stack([series[s : s + WINDOW] for series in test for s in starts])
    y = np.repeat(labels, len(starts))
    return ((x - mean) / std).astype(np.float32), y


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_demo_model_is_shipped_and_accurate(name: str, windows: tuple[np.ndarray, np.ndarray]) -> None:
    path = DEMO / name
    assert path.is_file(), f"{path} is missing: run `make models`"
    x, y = windows
    with load_model(path) as model:
        assert [s.shape for s in model.inputs] == [(None, WINDOW, 6)]
        (output,) = model.outputs
        probs = float_output(model.predict(x)[output.name])
        assert probs.shape == (len(x), 4)
        assert probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)
        assert (probs.argmax(axis=1) == y).mean() >= 0.9
        # any batch size gives the same answers as one window at a time
        one = np.concatenate([model.predict(x[i : i + 1])[output.name] for i in range(7)])
        np.testing.assert_allclose(probs[:7], one, rtol=1e-5, atol=1e-5)


def test_int8_tflite_agrees_with_fp32_onnx(windows: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = windows
    with (
        load_model(DEMO / "basicmotions-int8.tflite") as int8,
        load_model(DEMO / "basicmotions-fp32.onnx") as fp32,
    ):
        q = float_output(next(iter(int8.predict(x).values())))
        f = float_output(next(iter(fp32.predict(x).values())))
    assert (q.argmax(axis=1) == f.argmax(axis=1)).mean() >= 0.95
    assert np.abs(q - f).max() < 0.1
