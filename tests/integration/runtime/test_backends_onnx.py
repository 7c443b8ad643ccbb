"""ONNX Runtime backend on small models built with onnx.helper."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgefleet.errors import ModelInputError, ModelLoadError
from edgefleet.runtime import load_model
from tests.fixtures.runtime import onnx_models as om
from tests.support.arrays import float_output

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-models")


def _rng() -> np.random.Generator:
    return np.random.default_rng(42)


def test_float_model_info_and_predict(models_dir: Path) -> None:
    path = om.float_model(models_dir)
    with load_model(path) as model:
        assert model.info.format == "onnx"
        assert model.info.backend == "onnxruntime"
        assert model.info.size_bytes == path.stat().st_size
        assert len(model.info.sha256) == 64
        assert model.info.providers == ["CPUExecutionProvider"]
        assert [(s.name, s.shape, s.dtype) for s in model.info.inputs] == [("x", (None, 4), "float32")]
        x = _rng().normal(size=(7, 4)).astype(np.float32)
        out = model.predict(x)
        assert list(out) == ["probs"]
        assert out["probs"].dtype == np.float32
        np.testing.assert_allclose(float_output(out["probs"]), om.expected_probs(x), rtol=1e-5, atol=1e-6)
        # float64 input is cast (same kind); a mapping works as well as a bare array
        out64 = model.predict({"x": x.astype(np.float64)})
        np.testing.assert_allclose(float_output(out64["probs"]), float_output(out["probs"]), rtol=1e-6)


def test_fixed_batch_one_model_accepts_any_batch(models_dir: Path) -> None:
    with load_model(om.float_model(models_dir, batch=1)) as model:
        assert model.info.inputs[0].shape == (1, 4)
        x = _rng().normal(size=(5, 4)).astype(np.float32)
        out = float_output(model.predict(x)["probs"])
        assert out.shape == (5, 3)
        np.testing.assert_allclose(out, om.expected_probs(x), rtol=1e-5, atol=1e-6)


def test_int8_io_model_is_float_to_the_caller(models_dir: Path) -> None:
    with load_model(om.int8_io_model(models_dir)) as model:
        spec_in, spec_out = model.info.inputs[0], model.info.outputs[0]
        assert spec_in.dtype == "int8"
        assert spec_in.quantization is not None
        assert spec_in.quantization.scale == pytest.approx(om.X_SCALE)
        assert spec_in.quantization.zero_point == om.X_ZERO
        assert spec_out.quantization is not None
        assert spec_out.quantization.zero_point == om.Y_ZERO
        x = np.array([[-1.0, 0.0, 0.5, 1.2], [100.0, -100.0, 0.26, 0.04]], dtype=np.float32)
        y = float_output(model.predict(x)["yq"])
        assert y.dtype == np.float32
        # relu, through int8 on both sides: within one quantization step of each scale
        expected = np.maximum(np.clip(x, (-128 - om.X_ZERO) * om.X_SCALE, (127 - om.X_ZERO) * om.X_SCALE), 0)
        expected = np.minimum(expected, (127 - om.Y_ZERO) * om.Y_SCALE)
        np.testing.assert_allclose(y, expected, atol=om.X_SCALE / 2 + om.Y_SCALE / 2 + 1e-6)


def test_int8_quantization_from_metadata(models_dir: Path) -> None:
    with load_model(om.int8_metadata_model(models_dir)) as model:
        assert model.info.inputs[0].quantization is not None
        out = float_output(model.predict(np.array([[1.0, -2.0]], np.float32))["qout"])
        np.testing.assert_allclose(out, [[1.0, -2.0]])


def test_float64_and_float16_tensors_are_float32_to_the_caller(models_dir: Path) -> None:
    with load_model(om.wide_float_model(models_dir)) as model:
        assert [s.dtype for s in model.info.inputs] == ["float64", "float16"]
        assert [s.caller_dtype for s in model.inputs] == ["float32", "float32"]
        x = np.array([[1.5, -2.0]], np.float32)
        out = model.predict({"x": x, "h": x})
        assert out["y"].dtype == np.float32
        assert out["g"].dtype == np.float32
        np.testing.assert_array_equal(out["y"], x * 2)
        np.testing.assert_array_equal(out["g"], x + 1)


def test_multi_input_multi_output(models_dir: Path) -> None:
    with load_model(om.multi_io_model(models_dir)) as model:
        a = _rng().normal(size=(3, 4)).astype(np.float32)
        b = _rng().normal(size=(3, 2)).astype(np.float32)
        out = model.predict({"a": a, "b": b})
        assert set(out) == {"joined", "total"}
        np.testing.assert_allclose(float_output(out["joined"]), np.concatenate([a, b], axis=1))
        np.testing.assert_allclose(
            float_output(out["total"]), np.concatenate([a, b], axis=1).sum(axis=1, keepdims=True), rtol=1e-5
        )
        # one row broadcasts across the batch
        out = model.predict({"a": a, "b": b[:1]})
        np.testing.assert_allclose(float_output(out["joined"])[:, 4:], np.repeat(b[:1], 3, axis=0))
        with pytest.raises(ModelInputError, match="bare array") as info:
            model.predict(a)
        assert info.value.hint


def test_multi_input_errors_name_the_tensor(models_dir: Path) -> None:
    with load_model(om.multi_io_model(models_dir)) as model:
        a = np.zeros((2, 4), np.float32)
        with pytest.raises(ModelInputError, match="missing input 'b'") as missing:
            model.predict({"a": a})
        assert missing.value.tensor == "b"
        with pytest.raises(ModelInputError, match="unknown input 'c'") as unknown:
            model.predict({"a": a, "b": np.zeros((2, 2), np.float32), "c": a})
        assert unknown.value.tensor == "c"
        with pytest.raises(ModelInputError, match=r"'a' has 2 rows but the batch has 3 \(a=2, b=3\)") as rows:
            model.predict({"a": a, "b": np.zeros((3, 2), np.float32)})
        assert rows.value.tensor == "a"


def test_dynamic_dimensions(models_dir: Path) -> None:
    with load_model(om.dynamic_time_model(models_dir)) as model:
        assert model.info.inputs[0].shape == (None, None, 3)
        for t in (1, 5, 17):
            seq = _rng().normal(size=(2, t, 3)).astype(np.float32)
            np.testing.assert_allclose(
                float_output(model.predict(seq)["mean"]), seq.mean(axis=1), rtol=1e-5, atol=1e-6
            )


def test_integer_and_scalar_inputs_pass_through(models_dir: Path) -> None:
    with load_model(om.passthrough_model(models_dir)) as model:
        assert [s.dtype for s in model.info.inputs] == ["float32", "int64", "int32"]
        x = _rng().normal(size=(3, 4)).astype(np.float32)
        ids = np.array([0, 4, 2], dtype=np.int64)
        out = float_output(model.predict({"x": x, "ids": ids, "gain": np.array(3, dtype=np.int32)})["y"])
        np.testing.assert_allclose(out, (x + om.EMBEDDING[ids]) * 3, rtol=1e-6)
        # int32 ids and an int64 gain that fits are cast safely
        out2 = float_output(
            model.predict({"x": x, "ids": ids.astype(np.int32), "gain": np.array(3, dtype=np.int64)})["y"]
        )
        np.testing.assert_allclose(out2, out)
        with pytest.raises(ModelInputError, match="cannot be cast safely") as info:
            model.predict({"x": x, "ids": ids.astype(np.float32), "gain": np.array(3, np.int32)})
        assert info.value.tensor == "ids"
        assert info.value.expected == "int64"
        assert info.value.got == "float32"
        with pytest.raises(ModelInputError, match="'gain'"):
            model.predict({"x": x, "ids": ids, "gain": np.array(2**40, dtype=np.int64)})


def test_stateful_fixed_batch_threads_state_through_the_batch(models_dir: Path) -> None:
    with load_model(om.stateful_model(models_dir), state_map={"state_in": "state_out"}) as model:
        assert [s.name for s in model.inputs] == ["x"]
        x = np.ones((3, 4), np.float32)
        first = model.predict(x)["y"][:, 0]
        assert first.tolist() == [1.0, 2.0, 3.0]  # samples of a batch are consecutive steps
        assert model.predict(x[:1])["y"][0, 0] == 4.0
        model.reset_state()
        assert model.predict(x[:1])["y"][0, 0] == 1.0
        with pytest.raises(ModelInputError, match="recurrent state"):
            model.predict({"x": x, "state_in": x})


def test_stateful_dynamic_batch_keeps_one_state_per_row(models_dir: Path) -> None:
    path = om.stateful_model(models_dir, batch="N")
    with load_model(path, state_map={"state_in": "state_out"}) as model:
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        first = model.predict(x)
        first["state_out"][:] = 100.0  # the caller owns returned arrays; the state is a copy
        np.testing.assert_array_equal(model.predict(x)["y"], 2 * x)
        model.reset_state()
        np.testing.assert_array_equal(model.predict(x)["y"], x)


def test_bad_state_map_is_a_load_error(models_dir: Path) -> None:
    path = om.stateful_model(models_dir)
    with pytest.raises(ModelLoadError, match="'nope' is not an output"):
        load_model(path, state_map={"state_in": "nope"})
    with pytest.raises(ModelLoadError, match="'h' is not an input"):
        load_model(path, state_map={"h": "state_out"})


def test_unknown_op_is_named(models_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(om.custom_op_model(models_dir))
    assert info.value.op == "FancyGelu"
    assert "FancyGelu" in info.value.message
    assert info.value.hint


def test_unavailable_provider_falls_back_to_cpu(models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        model = load_model(om.float_model(models_dir), providers=["tensorrt"], threads=1, inter_op_threads=1)
    with model:
        assert model.info.providers == ["CPUExecutionProvider"]
        assert model.info.threads == 1
        assert model.predict(np.zeros((1, 4), np.float32))["probs"].shape == (1, 3)
    assert "'tensorrt' is not available" in caplog.text
    assert "CPUExecutionProvider" in caplog.text
