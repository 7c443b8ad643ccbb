"""Real-work models: edgefleet's inference path beside the bare runtime loop (goal >= 0.95x).

    python bench/model_path.py [--batch 32] [--seconds 5] [--threads 1] [--hop H] [--json out.json]
                               [MODEL ...]

Wraps :func:`edgefleet.bench.run_benchmark` (the code behind ``edgefleet model bench``). By default
it measures two models that do real work per window, where the ratio says something about
edgefleet rather than about Python's fixed cost per call:

* the demo's fp32 cloud model (``models/demo/basicmotions-cloud-fp32.onnx``, windows 50x6, hop 10
  as the demo streams it): the bare ``InferenceSession.run`` loop beside edgefleet's full path
  (a producer thread pushing 64-sample blocks -> StreamBuffer -> Batcher -> Model.predict, the
  agent's structure);
* an image model, a small CNN on ``[1, 128, 128, 3]`` images built here with onnx's helper API
  (batch axis fixed at 1, as many image models ship): the bare loop feeding one image per call
  beside ``Model.predict``, edgefleet's path for a model that is not windowed.

Any ``.tflite`` / ``.onnx`` given on the command line is measured instead. The tiny demo int8
models (about 2 us per window) belong to ``bench/saturation.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgefleet.bench import TARGET_RATIO, BenchReport, run_benchmark
from edgefleet.errors import EdgefleetError

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo"
CLOUD = DEMO / "basicmotions-cloud-fp32.onnx"


def build_image_model(path: Path, size: int = 128, classes: int = 5) -> Path:
    """A small NHWC CNN, batch fixed at 1: two strided 3x3 convolutions, global pooling, a dense layer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "w1": (rng.standard_normal((16, 3, 3, 3)) * 0.2).astype(np.float32),
        "w2": (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32),
        "fc": (rng.standard_normal((32, classes)) * 0.2).astype(np.float32),
    }
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
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def summary_line(report: BenchReport) -> str:
    ours = report.edgefleet
    path_name = "edgefleet" if ours is not None else "predict"
    ours_cpu = (ours or report.predict).cpu_us_per_window
    bare_cpu = report.bare.cpu_us_per_window
    cpu = "-" if bare_cpu is None or ours_cpu is None else f"{ours_cpu / bare_cpu:.2f}x"
    bare_us = 1e6 / report.bare.windows_per_s
    verdict = "meets" if report.meets_target else "misses"
    return (
        f"{Path(report.model_path).name:<30}{path_name:>10}{bare_us:>12.1f}{report.ratio:>11.3f}x"
        f"{cpu:>12}   {verdict} >= {TARGET_RATIO}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="models to measure (default: see above)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per path")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    parser.add_argument("--hop", type=int, default=None, help="window hop (default: 10 for the cloud model)")
    parser.add_argument("--json", type=Path, default=None, help="also write the reports as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="model-path-") as tmp:
        runs: list[tuple[Path, int | None]] = [(m, args.hop) for m in args.models]
        if not runs:
            runs = [
                (CLOUD, 10 if args.hop is None else args.hop),
                (build_image_model(Path(tmp) / "cnn.onnx"), None),
            ]
        reports = []
        for model, hop in runs:
            try:
                report = run_benchmark(
                    model, batch=args.batch, seconds=args.seconds, threads=args.threads, hop=hop
                )
            except EdgefleetError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(report.render_text())
            print()
            reports.append(report)
    print(f"{'model':<30}{'path':>10}{'bare us/w':>12}{'path/bare':>12}{'CPU/w':>12}   goal")
    for report in reports:
        print(summary_line(report))
    if args.json is not None:
        args.json.write_text(json.dumps([r.model_dump() for r in reports], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
