"""run_benchmark on real models: small ONNX graphs built here (windowed and image) and the demo models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefleet.bench import TARGET_RATIO, BenchmarkError, BenchReport, bare_loop, run_benchmark
from edgefleet.errors import ModelLoadError

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


def image_onnx(path: Path, batch: int | str = 1, size: int = 128, classes: int = 5) -> Path:
    """A small CNN on (batch, size, size, 3) float32 images (NHWC, as image models ship):
    Transpose -> Conv 3x3 stride 2 -> Relu -> Conv 3x3 stride 2 -> Relu -> global pool -> Gemm -> Softmax."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    fc = (rng.standard_normal((16, classes)) * 0.2).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["nchw", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c2"], ["r2"]),
            helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "fc"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
        ],
        "image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, size, size, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, classes])],
        [numpy_helper.from_array(w, name) for w, name in ((w1, "w1"), (w2, "w2"), (fc, "fc"))],
    )
    return _save(graph, path)


def check_report(report: BenchReport, batch: int) -> None:
    inline = report.edgefleet_inline
    assert inline is not None
    assert report.edgefleet is not None
    assert report.windowed
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
        ours = report.edgefleet
        assert ours is not None
        assert report.prequantized_ratio == pytest.approx(
            ours.windows_per_s / report.bare_prequantized.windows_per_s
        )
        assert "bare-int8" in report.render_text()
    else:
        # this ONNX model takes float32 (quantization is inside the graph): nothing to pre-quantize
        assert report.bare_prequantized is None
        assert report.prequantized_ratio is None


def test_bare_loop_conversions_match_model_predict() -> None:
    """The fair bare loop's hand-written quantize/dequantize gives Model.predict's answers."""
    from edgefleet.runtime.loading import load_model

    path = DEMO / "basicmotions-int8.tflite"
    if not path.exists():
        pytest.skip(f"{path} is not built (python models/build_demo.py)")
    batches = [np.random.default_rng(3).standard_normal((8, 50, 6)).astype(np.float32)]
    loop = bare_loop(path, batches)
    step, prequantized = loop.step, loop.prequantized
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


@pytest.mark.parametrize("batch_axis", [1, "N"])
def test_image_model_is_measured_against_predict(tmp_path: Path, batch_axis: int | str) -> None:
    """A [1, 128, 128, 3] image model (batch fixed at 1, as many ship) and the same with a free batch."""
    path = image_onnx(tmp_path / "image.onnx", batch=batch_axis)
    report = run_benchmark(path, batch=4, seconds=0.3, threads=1)
    assert not report.windowed
    assert report.input_shape == [128, 128, 3]
    assert report.edgefleet is None
    assert report.edgefleet_inline is None
    assert (report.window_length, report.channels, report.hop, report.push_chunk) == (None, None, None, None)
    for result in (report.bare, report.predict):
        assert result.batches > 0
        assert result.windows == result.batches * 4
        assert result.cpu_us_per_window is not None
        assert result.cpu_us_per_window > 0
    assert report.ratio == pytest.approx(report.predict.windows_per_s / report.bare.windows_per_s)
    assert report.ratio == report.predict_ratio
    assert report.target_ratio == TARGET_RATIO == 0.95
    assert report.meets_target == (report.ratio >= TARGET_RATIO)
    text = report.render_text()
    assert "edgefleet's path is Model.predict" in text
    assert "[128, 128, 3]" in text
    assert "ratio predict/bare" in text


def test_bare_loop_on_a_fixed_batch_model_matches_model_predict(tmp_path: Path) -> None:
    """With the batch axis fixed at 1 the bare loop feeds one image per call, and answers as predict does."""
    from edgefleet.runtime.loading import load_model

    path = image_onnx(tmp_path / "image.onnx", batch=1, size=32)
    batches = [np.random.default_rng(5).standard_normal((3, 32, 32, 3)).astype(np.float32)]
    got = bare_loop(path, batches).step(0)
    assert isinstance(got, np.ndarray)
    assert got.shape == (3, 5)
    with load_model(path) as model:
        expected = np.asarray(next(iter(model.predict(batches[0]).values())), dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_fixed_batch_model_with_an_uneven_batch_is_refused(tmp_path: Path) -> None:
    path = image_onnx(tmp_path / "image.onnx", batch=2, size=16)
    with pytest.raises(BenchmarkError, match="fixed at 2") as info:
        run_benchmark(path, batch=3, seconds=0.1)
    assert "--batch 2" in (info.value.hint or "")


def test_hop_is_refused_for_a_model_that_is_not_windowed(tmp_path: Path) -> None:
    path = image_onnx(tmp_path / "image.onnx", batch="N", size=16)
    with pytest.raises(BenchmarkError, match="apply to \\(batch, window_length, channels\\) models") as info:
        run_benchmark(path, seconds=0.1, hop=2)
    assert info.value.hint


def test_model_with_a_free_size_beyond_the_batch_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "free",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T", 5])],
    )
    path = _save(graph, tmp_path / "free.onnx")
    with pytest.raises(BenchmarkError, match="fixed sizes after it") as info:
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


def test_cli_benches_an_image_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgefleet.cli.main import main

    path = image_onnx(tmp_path / "image.onnx", batch=1, size=64)
    assert main(["model", "bench", str(path), "--batch", "2", "--seconds", "0.2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "[64, 64, 3]" in out
    assert "ratio predict/bare" in out
    assert main(["model", "bench", str(path), "--seconds", "0.1", "--hop", "2"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err
    assert "hint:" in err
