"""run_benchmark on real models: a small ONNX graph built here and the shipped demo int8 models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefleet.errors import ModelLoadError
from edgefleet.runtime.benchmark import BenchmarkError, BenchReport, run_benchmark

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo"


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def windowed_onnx(path: Path, length: int = 8, channels: int = 3, classes: int = 4) -> Path:
    """(N, length, channels) float32 -> Flatten -> MatMul -> Softmax (N, classes)."""
    weights = np.random.default_rng(0).standard_normal((length * channels, classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["window"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
        ],
        "windowed",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", length, channels])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(weights, "w")],
    )
    return _save(graph, path)


def check_report(report: BenchReport, batch: int) -> None:
    inline = report.edgefleet_inline
    assert inline is not None
    for result in (report.bare, report.predict, report.edgefleet, inline):
        assert result.batches > 0
        assert result.windows_per_s > 0
        assert result.cpu_us_per_window is not None
        assert result.cpu_us_per_window > 0
        lat = result.latency
        assert 0 < lat.p50_ms <= lat.p95_ms <= lat.p99_ms
    for result in (report.bare, report.predict, inline):
        assert result.windows == result.batches * batch
    # threaded: batches may be partial (the batch timeout), and the count is corrected by the
    # ring's backlog before and after the timed rounds
    assert report.edgefleet.windows > 0
    assert report.dropped == 0  # the block policy: the producer waits, nothing is lost
    assert report.consumer_cpu_us_per_window is not None
    assert report.consumer_cpu_us_per_window > 0
    assert report.ratio == pytest.approx(report.edgefleet.windows_per_s / report.bare.windows_per_s)
    assert report.inline_ratio == pytest.approx(inline.windows_per_s / report.bare.windows_per_s)
    assert report.rounds >= 2
    text = report.render_text()
    for needle in (
        "bare",
        "predict",
        "edgefleet-inline",
        "ratio edgefleet/bare",
        "ratio edgefleet-inline/bare",
        "CPU per window",
        "inference thread alone",
        "0 dropped",
        f"batch {batch}",
    ):
        assert needle in text
    assert report.meets_target == (report.ratio >= report.target_ratio)
    assert report.median_ratio == pytest.approx(report.bare.latency.p50_ms / report.edgefleet.latency.p50_ms)
    dumped = report.model_dump(mode="json")
    assert {"ratio", "predict_ratio", "median_ratio", "meets_target"} <= set(dumped)
    assert json.loads(json.dumps(dumped))["edgefleet"]["batches"] == report.edgefleet.batches


def test_small_onnx_model(tmp_path: Path) -> None:
    path = windowed_onnx(tmp_path / "small.onnx")
    report = run_benchmark(path, batch=4, seconds=0.2, threads=1)
    check_report(report, 4)
    assert (report.format, report.window_length, report.channels, report.hop) == ("onnx", 8, 3, 8)
    assert report.threads == 1


def test_overlapping_windows_and_small_push_blocks(tmp_path: Path) -> None:
    path = windowed_onnx(tmp_path / "small.onnx")
    report = run_benchmark(path, batch=3, seconds=0.1, hop=2, push_chunk=1)
    check_report(report, 3)
    assert (report.hop, report.push_chunk) == (2, 1)


@pytest.mark.parametrize("name", ["basicmotions-int8.tflite", "basicmotions-int8.onnx"])
def test_demo_int8_models(name: str) -> None:
    path = DEMO / name
    if not path.exists():
        pytest.skip(f"{path} is not built (python models/build_demo.py)")
    report = run_benchmark(path, batch=32, seconds=0.3)
    check_report(report, 32)
    assert report.format == path.suffix.lstrip(".")
    assert report.window_length == 50
    assert report.channels == 6
    assert report.push_chunk == 64  # the replay source's default block
    if report.format == "tflite":
        # int8 input: the fair bare loop quantizes float32 itself; the pre-quantized one is extra
        assert "quantize" in report.bare.description
        assert report.bare_prequantized is not None
        assert report.bare_prequantized.batches > 0
        assert report.prequantized_ratio == pytest.approx(
            report.edgefleet.windows_per_s / report.bare_prequantized.windows_per_s
        )
        assert "bare-int8" in report.render_text()
    else:
        # this ONNX model takes float32 (quantization is inside the graph): nothing to pre-quantize
        assert report.bare_prequantized is None
        assert report.prequantized_ratio is None


def test_bare_loop_conversions_match_model_predict() -> None:
    """The fair bare loop's hand-written quantize/dequantize gives Model.predict's answers."""
    from edgefleet.runtime.benchmark_paths import _bare_tflite
    from edgefleet.runtime.loading import load_model

    path = DEMO / "basicmotions-int8.tflite"
    if not path.exists():
        pytest.skip(f"{path} is not built (python models/build_demo.py)")
    batches = [np.random.default_rng(3).standard_normal((8, 50, 6)).astype(np.float32)]
    step, prequantized = _bare_tflite(path, batches, None)
    assert prequantized is not None
    with load_model(path) as model:
        expected = np.asarray(next(iter(model.predict(batches[0]).values())), dtype=np.float32)
    got = step(0)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), expected, atol=1e-6)
    raw = prequantized(0)
    assert isinstance(raw, np.ndarray)
    assert raw.dtype == np.int8


def test_model_without_a_window_axis_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
    )
    path = _save(graph, tmp_path / "flat.onnx")
    with pytest.raises(BenchmarkError, match=r"expected \(batch, window_length, channels\)") as info:
        run_benchmark(path, seconds=0.1)
    assert info.value.hint


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch": 0}, "batch must be >= 1"),
        ({"seconds": 0}, "seconds must be > 0"),
        ({"hop": 9}, r"hop must be in 1\.\.8"),
        ({"push_chunk": 0}, "push_chunk must be >= 1"),
    ],
)
def test_bad_settings(tmp_path: Path, kwargs: dict[str, float], match: str) -> None:
    path = windowed_onnx(tmp_path / "small.onnx")
    with pytest.raises(BenchmarkError, match=match) as info:
        run_benchmark(path, **kwargs)  # type: ignore[arg-type]
    assert info.value.hint


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        run_benchmark(tmp_path / "nope.onnx", seconds=0.1)
