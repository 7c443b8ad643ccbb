"""edgefleet's inference path beside the bare runtime loop, on both demo int8 models.

    python bench/model_path.py [--batch 32] [--seconds 5] [--threads N] [--hop H] [--push-chunk N]
                               [--json out.json] [MODEL ...]

Wraps ``edgefleet.runtime.benchmark.run_benchmark`` (the code behind ``edgefleet model bench``):
per model it prints the bare runtime loop (from float32 windows, with the quantize / dequantize a
hand-written loop needs for an int8 model; the pre-quantized loop as extra information),
``Model.predict`` alone and the full StreamBuffer -> Batcher -> predict path fed in 64-sample
blocks, with the ratios to the bare loop. ``--hop 10`` is the demo models' own windowing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgefleet.errors import EdgefleetError
from edgefleet.runtime.benchmark import run_benchmark

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo"
DEFAULT_MODELS = [DEMO / "basicmotions-int8.tflite", DEMO / "basicmotions-int8.onnx"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per path")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--hop", type=int, default=None, help="window hop (default: window length)")
    parser.add_argument(
        "--push-chunk",
        type=int,
        default=None,
        help="samples per push_block (default: 64)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the reports as JSON here")
    args = parser.parse_args()

    reports = []
    summary = []
    for model in args.models:
        try:
            report = run_benchmark(
                model,
                batch=args.batch,
                seconds=args.seconds,
                threads=args.threads,
                hop=args.hop,
                push_chunk=args.push_chunk,
            )
        except EdgefleetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(report.render_text())
        print()
        reports.append(report.model_dump())
        summary.append((model.name, report.ratio, report.predict_ratio, report.prequantized_ratio))
    print(f"{'model':<32}{'edgefleet/bare':>16}{'predict/bare':>14}{'edgefleet/bare-int8':>21}")
    for name, ratio, predict_ratio, prequantized_ratio in summary:
        extra = "-" if prequantized_ratio is None else f"{prequantized_ratio:.3f}x"
        print(f"{name:<32}{ratio:>15.3f}x{predict_ratio:>13.3f}x{extra:>21}")
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
