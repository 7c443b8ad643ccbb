"""Pure logic of the model runtime: quantization, provider choice, error parsing, looping."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgefleet.errors import ModelError, ModelLoadError
from edgefleet.runtime.backends import backend_for, supported_extensions
from edgefleet.runtime.backends.base import batched_inputs, custom_op_error, run_looped
from edgefleet.runtime.backends.onnx import resolve_providers
from edgefleet.runtime.quantization import Dequantizer, Quantizer, dequantize, quantize
from edgefleet.runtime.tensors import QuantParams, TensorSpec, format_shape
from edgefleet.types import AnyArray
from tests.support.arrays import float_output

pytestmark = pytest.mark.unit


def test_quantize_rounds_and_clips_to_int8() -> None:
    params = QuantParams(scale=0.5, zero_point=-3)
    values = np.array([0.0, 0.24, 0.26, -1.0, 1000.0, -1000.0], dtype=np.float32)
    q = quantize(values, params, np.dtype(np.int8))
    assert q.dtype == np.int8
    assert q.tolist() == [-3, -3, -2, -5, 127, -128]


def test_quantize_extremes_without_warnings() -> None:
    values = np.array([3e38, -3e38, np.inf, -np.inf, 1e-30], dtype=np.float32)
    q = quantize(values, QuantParams(scale=0.001, zero_point=-31), np.dtype(np.int8))
    assert q.tolist() == [127, -128, 127, -128, -31]


def test_quantize_uint8_range() -> None:
    q = quantize(
        np.array([-5.0, 0.0, 300.0], np.float32), QuantParams(scale=1.0, zero_point=10), np.dtype(np.uint8)
    )
    assert q.tolist() == [5, 10, 255]


def test_dequantize_inverts_quantize_within_half_a_step() -> None:
    params = QuantParams(scale=0.1, zero_point=7)
    values = np.linspace(-10, 10, 101, dtype=np.float32)
    back = dequantize(quantize(values, params, np.dtype(np.int8)), params)
    assert back.dtype == np.float32
    assert np.max(np.abs(back - values)) <= 0.05 + 1e-6


def test_format_shape_marks_dynamic_dims() -> None:
    assert format_shape((None, 8, 3)) == "[?, 8, 3]"
    assert format_shape(()) == "[]"


def test_tensor_spec_reports_caller_dtype() -> None:
    quantized = TensorSpec(
        name="x", shape=(None, 2), dtype="int8", quantization=QuantParams(scale=1, zero_point=0)
    )
    plain = TensorSpec(name="ids", shape=(None,), dtype="int64")
    assert quantized.caller_dtype == "float32"
    assert plain.caller_dtype == "int64"
    assert "quantized" in quantized.describe()


def test_resolve_providers_keeps_available_and_ends_with_cpu() -> None:
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["cuda"], available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(None, available) == ["CPUExecutionProvider"]


def test_resolve_providers_warns_and_lists_available(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        chosen = resolve_providers(["tensorrt", "openvino"], ["CPUExecutionProvider"])
    assert chosen == ["CPUExecutionProvider"]
    assert "'tensorrt' is not available" in caplog.text
    assert "available: CPUExecutionProvider" in caplog.text


@pytest.mark.parametrize(
    ("message", "op"),
    [
        (
            "[ONNXRuntimeError] : 1 : FAIL : Fatal error: "
            "com.acme:FancyGelu(-1) is not a registered function/op",
            "FancyGelu",
        ),
        ("INVALID_GRAPH : Error No Op registered for Gelux with domain_version of 17", "Gelux"),
        ("Encountered unresolved custom op: MyCustomOp.", "MyCustomOp"),
        (
            "See instructions: ...Node number 1 (FlexMatrixDeterminant) failed to prepare.",
            "FlexMatrixDeterminant",
        ),
    ],
)
def test_custom_op_error_names_the_op(message: str, op: str) -> None:
    error = custom_op_error(message, path=Path("m.onnx"), runtime="rt")
    assert error is not None
    assert error.op == op
    assert op in error.message
    assert error.hint


def test_custom_op_error_ignores_other_failures() -> None:
    assert (
        custom_op_error(
            "Node number 3 (TfLiteXNNPackDelegate) failed to prepare.", path=Path("m"), runtime="rt"
        )
        is None
    )
    assert custom_op_error("protobuf parsing failed", path=Path("m"), runtime="rt") is None


def test_batched_inputs_are_dynamic_or_fixed_one() -> None:
    specs = [
        TensorSpec(name="a", shape=(None, 3), dtype="float32"),
        TensorSpec(name="b", shape=(1, 3), dtype="float32"),
        TensorSpec(name="c", shape=(), dtype="int32"),
        TensorSpec(name="d", shape=(4, 3), dtype="float32"),
    ]
    assert batched_inputs(specs) == frozenset({"a", "b"})


def test_run_looped_splits_batched_inputs_and_concatenates() -> None:
    calls: list[tuple[int, ...]] = []

    def run_one(feeds: Mapping[str, AnyArray]) -> dict[str, AnyArray]:
        sample = float_output(feeds["x"])
        calls.append(sample.shape)
        # "s" is 0-d, as backends return a scalar output: one value per sample comes back
        return {"y": sample * float_output(feeds["k"]), "s": np.array(sample.sum(), dtype=np.float32)}

    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = run_looped(run_one, {"x": x, "k": np.array(2, dtype=np.float32)}, frozenset({"x"}), 3)
    assert calls == [(1, 2)] * 3
    np.testing.assert_array_equal(out["y"], x * 2)
    np.testing.assert_array_equal(out["s"], x.sum(axis=1))


def test_run_looped_keeps_each_samples_rows_in_order() -> None:
    def run_one(feeds: Mapping[str, AnyArray]) -> dict[str, AnyArray]:
        value = float_output(feeds["x"])[0, 0]
        return {"pair": np.array([[value, -value], [value * 10, 0]], np.float32)}

    out = run_looped(run_one, {"x": np.arange(3, dtype=np.float32).reshape(3, 1)}, frozenset({"x"}), 3)
    assert out["pair"].tolist() == [[0, 0], [0, 0], [1, -1], [10, 0], [2, -2], [20, 0]]
    assert run_looped(run_one, {"x": np.zeros((0, 1), np.float32)}, frozenset({"x"}), 0) == {}


def test_run_looped_rejects_outputs_that_change_shape() -> None:
    sizes = iter([1, 2])

    def run_one(feeds: Mapping[str, AnyArray]) -> dict[str, AnyArray]:
        return {"y": np.zeros((1, next(sizes)), np.float32)}

    with pytest.raises(ModelError, match="changes shape"):
        run_looped(run_one, {"x": np.zeros((2, 1), np.float32)}, frozenset({"x"}), 2)


def test_unknown_extension_lists_supported_ones() -> None:
    with pytest.raises(ModelLoadError) as info:
        backend_for(Path("model.pt"))
    assert "'.pt'" in info.value.message
    for ext in supported_extensions():
        assert ext in info.value.message
    assert info.value.hint


def test_backend_must_match_the_format() -> None:
    with pytest.raises(ModelLoadError, match=r"reads \.onnx models, not \.tflite"):
        backend_for(Path("m.tflite"), "onnxruntime")
    with pytest.raises(ModelLoadError, match="unknown backend 'torch'"):
        backend_for(Path("m.onnx"), "torch")
    assert backend_for(Path("m.TFLITE"), "tflite").type == "litert"


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
def test_dequantizer_table_and_arithmetic_paths_agree(dtype: type[np.integer]) -> None:
    params = QuantParams(scale=0.037, zero_point=5)
    info = np.iinfo(dtype)
    codes = np.arange(max(info.min, -300), min(info.max, 300) + 1).astype(dtype)
    fast = Dequantizer(params, np.dtype(dtype))(codes)
    slow = (codes.astype(np.float32) - np.float32(5)) * np.float32(0.037)
    np.testing.assert_array_equal(fast, slow)
    back = Quantizer(params, np.dtype(dtype))(fast)
    np.testing.assert_array_equal(back, codes)


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(np.float32, st.integers(1, 40), elements=st.floats(-1e6, 1e6, width=32)),
    scale=st.floats(1e-3, 10.0),
    zero_point=st.integers(-20, 20),
    dtype=st.sampled_from([np.int8, np.uint8]),
)
def test_quantize_round_trip_is_within_half_a_step(
    values: np.ndarray, scale: float, zero_point: int, dtype: type[np.integer]
) -> None:
    params = QuantParams(scale=scale, zero_point=zero_point)
    q = Quantizer(params, np.dtype(dtype))(values)
    info = np.iinfo(dtype)
    assert q.dtype == dtype
    back = Dequantizer(params, np.dtype(dtype))(q)
    representable = np.clip(values, (info.min - zero_point) * scale, (info.max - zero_point) * scale)
    assert np.all(np.abs(back - representable) <= scale / 2 * (1 + 1e-4) + 1e-6)
