"""LiteRT backend on the committed .tflite fixtures (see tests/fixtures/runtime/make_tflite_fixtures.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgefleet.errors import ModelInputError, ModelLoadError
from edgefleet.runtime import load_model
from tests.support.arrays import float_output

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "runtime"


def _windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, size=(n, 8, 3)).astype(np.float32)


def _one_at_a_time(path: Path, x: np.ndarray) -> np.ndarray:
    with load_model(path) as model:
        return np.concatenate([model.predict(x[i : i + 1])["scores"] for i in range(len(x))])


def test_float_model_info_uses_signature_names() -> None:
    path = FIXTURES / "float_dynamic.tflite"
    with load_model(path, threads=1) as model:
        info = model.info
        assert (info.format, info.backend) == ("tflite", "litert")
        assert info.runtime.startswith(("ai-edge-litert", "tflite-runtime"))
        assert info.size_bytes == path.stat().st_size
        assert [(s.name, s.shape, s.dtype, s.quantization) for s in info.inputs] == [
            ("window", (None, 8, 3), "float32", None)
        ]
        assert [(s.name, s.shape) for s in info.outputs] == [("scores", (None, 4))]
        out = model.predict(_windows(6))
        assert list(out) == ["scores"]
        assert out["scores"].shape == (6, 4)
        assert out["scores"].dtype == np.float32
        np.testing.assert_allclose(out["scores"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 2, 5, 32])
def test_dynamic_batch_sizes_match_single_samples(batch: int) -> None:
    path = FIXTURES / "float_dynamic.tflite"
    x = _windows(batch, seed=batch)
    with load_model(path) as model:
        np.testing.assert_allclose(
            float_output(model.predict(x)["scores"]), _one_at_a_time(path, x), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("name", ["float_dynamic.tflite", "fixed_batch1_resizable.tflite"])
def test_alternating_batch_sizes_on_one_model(name: str) -> None:
    path = FIXTURES / name
    with load_model(path) as model:
        for batch in (3, 7, 3, 1, 7, 40):
            x = _windows(batch, seed=batch)
            np.testing.assert_allclose(
                float_output(model.predict(x)["scores"]), _one_at_a_time(path, x), rtol=1e-5, atol=1e-6
            )


def test_fixed_batch_one_is_resized(caplog: pytest.LogCaptureFixture) -> None:
    path = FIXTURES / "fixed_batch1_resizable.tflite"
    x = _windows(16)
    with caplog.at_level(logging.INFO), load_model(path) as model:
        assert model.info.inputs[0].shape == (1, 8, 3)
        batched = float_output(model.predict(x)["scores"])
        again = model.predict(x)["scores"]  # cached interpreter for batch 16
    assert "looping instead" not in caplog.text
    assert "changes results" not in caplog.text
    np.testing.assert_array_equal(batched, again)
    with load_model(FIXTURES / "float_dynamic.tflite") as reference:
        np.testing.assert_allclose(
            batched, float_output(reference.predict(x)["scores"]), rtol=1e-5, atol=1e-6
        )


def test_fixed_batch_one_that_cannot_resize_loops(caplog: pytest.LogCaptureFixture) -> None:
    path = FIXTURES / "fixed_batch1_reshape.tflite"
    x = _windows(4)
    with caplog.at_level(logging.INFO), load_model(path) as model:
        out = float_output(model.predict(x)["scores"])
        assert out.shape == (4, 4)
    assert "looping instead" in caplog.text
    np.testing.assert_allclose(out, _one_at_a_time(path, x), rtol=1e-6)


def test_fully_int8_model_is_float_to_the_caller() -> None:
    path = FIXTURES / "int8_full.tflite"
    with load_model(path) as model:
        spec_in, spec_out = model.info.inputs[0], model.info.outputs[0]
        assert (spec_in.dtype, spec_out.dtype) == ("int8", "int8")
        assert spec_in.quantization is not None
        assert spec_out.quantization is not None
        assert spec_in.quantization.scale > 0
        x = _windows(8)
        scores = float_output(model.predict(x)["scores"])
    assert scores.dtype == np.float32
    with load_model(FIXTURES / "float_dynamic.tflite") as reference:
        expected = float_output(reference.predict(x)["scores"])
    # int8 in and out: close to the float model, not equal
    assert np.max(np.abs(scores - expected)) < 0.05
    assert (scores.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.75


def test_multi_input_multi_output() -> None:
    with load_model(FIXTURES / "multi_io.tflite") as model:
        assert [s.name for s in model.inputs] == ["a", "b"]
        assert {s.name for s in model.outputs} == {"joined", "total"}
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        b = np.ones((3, 2), np.float32)
        out = model.predict({"b": b, "a": a})
        np.testing.assert_allclose(float_output(out["joined"]), np.concatenate([a * 2, b], axis=1))
        np.testing.assert_allclose(float_output(out["total"]), a.sum(axis=1, keepdims=True) + 2)
        with pytest.raises(ModelInputError, match="missing input 'a'") as info:
            model.predict({"b": b})
        assert info.value.tensor == "a"


def test_flex_op_is_named() -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(FIXTURES / "flex_op.tflite")
    assert info.value.op == "FlexMatrixDeterminant"
    assert "FlexMatrixDeterminant" in str(info.value)
    assert info.value.hint is not None
    assert "TFLITE_BUILTINS" in info.value.hint


def test_providers_are_ignored_for_tflite_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING),
        load_model(FIXTURES / "float_dynamic.tflite", providers=["cuda"]) as m,
    ):
        assert m.info.providers == ["cpu"]
    assert "apply to ONNX models" in caplog.text
