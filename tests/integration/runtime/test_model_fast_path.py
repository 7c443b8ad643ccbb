"""Model.predict's fast path (one float32 batch of the exact shape) against the general path.

The general path is forced by passing the same batch as a mapping, so both run on the same
loaded model; results, errors and NaN handling must not depend on which path ran.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefleet.errors import ModelError, ModelInputError
from edgefleet.runtime.loading import load_model

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo"
MODELS = ["basicmotions-int8.tflite", "basicmotions-int8.onnx"]


def demo(name: str) -> Path:
    path = DEMO / name
    if not path.exists():
        pytest.skip(f"{path} is not built (python models/build_demo.py)")
    return path


@pytest.mark.parametrize("name", MODELS)
def test_fast_path_matches_general_path(name: str) -> None:
    x = np.random.default_rng(5).standard_normal((32, 50, 6)).astype(np.float32)
    with load_model(demo(name)) as model:
        assert model._fast is not None  # the demo models take the fast path
        fast = model.predict(x)
        general = model.predict({model.inputs[0].name: x})
        assert fast.keys() == general.keys()
        for key in fast:
            np.testing.assert_array_equal(fast[key], general[key])
            assert fast[key].dtype == np.float32
        # a non-contiguous view and other batch sizes go through the fast path too
        strided = np.repeat(x, 2, axis=0)[::2]
        for key, value in model.predict(strided).items():
            np.testing.assert_array_equal(value, general[key])
        assert next(iter(model.predict(x[:3]).values())).shape[0] == 3


@pytest.mark.parametrize("name", MODELS)
def test_fast_path_rejects_nan_and_zero_policy_replaces_it(name: str) -> None:
    x = np.zeros((4, 50, 6), np.float32)
    x[1, 2, 3] = np.nan
    x[2, 0, 0] = np.inf
    with load_model(demo(name)) as model, pytest.raises(ModelInputError, match="2 NaN/inf"):
        model.predict(x)
    with load_model(demo(name), nan_policy="zero") as model:
        got = next(iter(model.predict(x).values()))
        clean = next(iter(model.predict(np.zeros_like(x)).values()))
        np.testing.assert_array_equal(got, clean)


def test_shapes_the_fast_path_does_not_take_still_get_clear_errors() -> None:
    with load_model(demo("basicmotions-int8.tflite")) as model:
        with pytest.raises(ModelInputError, match="shape"):
            model.predict(np.zeros((2, 49, 6), np.float32))
        with pytest.raises(ModelInputError, match="empty batch"):
            model.predict(np.zeros((0, 50, 6), np.float32))
        # float64 is not float32: the general path casts it
        x = np.random.default_rng(1).standard_normal((2, 50, 6))
        np.testing.assert_array_equal(
            next(iter(model.predict(x).values())),
            next(iter(model.predict(x.astype(np.float32)).values())),
        )
    model.close()
    with pytest.raises(ModelError, match="closed"):
        model.predict(np.zeros((1, 50, 6), np.float32))


MEAN = np.array([0.5, -1.0, 0.0, 2.0, -0.25, 1.0])
STD = np.array([2.0, 0.5, 1.0, 4.0, 1.5, 0.75])


@pytest.mark.parametrize("name", MODELS)
def test_input_normalization_matches_normalizing_first(name: str) -> None:
    x = (np.random.default_rng(6).standard_normal((32, 50, 6)) * STD + MEAN).astype(np.float32)
    normalized = ((x - MEAN.astype(np.float32)) / STD.astype(np.float32)).astype(np.float32)
    with load_model(demo(name)) as plain, load_model(demo(name)) as model:
        model.set_input_normalization(MEAN, STD)
        norm = model.input_normalization
        assert norm is not None
        np.testing.assert_array_equal(norm.std, STD.astype(np.float32))
        expected = plain.predict(normalized)
        fast = model.predict(x)
        general = model.predict({model.inputs[0].name: x})
        quantized = model.inputs[0].quantization is not None
        for key, want in expected.items():
            np.testing.assert_array_equal(fast[key], general[key])
            if quantized:
                # folded into the quantizer: an input code may move by one at a rounding tie
                diff = np.abs(fast[key].astype(np.float64) - want.astype(np.float64))
                assert diff.max() <= 0.05 * max(1.0, float(np.abs(want).max()))
            else:
                np.testing.assert_array_equal(fast[key], want)  # the same float32 arithmetic
        model.set_input_normalization(None)
        assert model.input_normalization is None
        for key, value in model.predict(normalized).items():
            np.testing.assert_array_equal(value, expected[key])


@pytest.mark.parametrize("name", MODELS)
def test_input_normalization_keeps_the_nan_policy(name: str) -> None:
    x = np.zeros((4, 50, 6), np.float32)
    x[1, 2, 3] = np.nan
    with load_model(demo(name)) as model:
        model.set_input_normalization(MEAN, STD)
        with pytest.raises(ModelInputError, match="1 NaN/inf"):
            model.predict(x)
    with load_model(demo(name), nan_policy="zero") as model:
        model.set_input_normalization(MEAN, STD)
        got = next(iter(model.predict(x).values()))
        np.testing.assert_array_equal(got, next(iter(model.predict(np.zeros_like(x)).values())))


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        (MEAN[:5], STD, r"mean must have shape \(6,\)"),
        (MEAN, np.zeros(6), "std must be > 0"),
        (MEAN, None, "needs both mean and std"),
    ],
)
def test_input_normalization_rejects_bad_constants(mean: object, std: object, message: str) -> None:
    with load_model(demo("basicmotions-int8.tflite")) as model:
        with pytest.raises(ModelInputError, match=message) as info:
            model.set_input_normalization(mean, std)  # type: ignore[arg-type]
        assert info.value.hint
        assert model.input_normalization is None  # unchanged after a refusal
