"""edgefleet's inference path beside the bare runtime loop, on both demo int8 models.

    python bench/model_path.py [--batch 32] [--seconds 5] [--threads N] [--hop H] [--push-chunk N]
                               [--json out.json] [MODEL ...]

Wraps ``edgefleet.runtime.benchmark.run_benchmark`` (the code behind ``edgefleet model bench``):
per model it prints the bare runtime loop (from float32 windows, with the quantize / dequantize a
hand-written loop needs for an int8 model; the pre-quantized loop as extra information),
``Model.predict`` alone and the full StreamBuffer -> Batcher -> predict path fed in 64-sample
blocks, with the ratios to the bare loop and each path's process CPU time per window.
``--hop 10`` is the demo models' own windowing.

The full path runs twice: ``edgefleet`` as the agent runs it (a producer thread pushes under the
``block`` policy while this thread batches and predicts; the runtimes release the GIL, so the
two overlap) and ``edgefleet-inline`` (the producer inline, nothing overlaps). The 0.9x target
applies to the threaded figure, edgefleet's path as deployed; the inline ratio and the CPU per
window (the second thread's cost) are printed beside it.
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
        summary.append(report)
    print(
        f"{'model':<26}{'edgefleet/bare':>15}{'(target)':>9}{'inline/bare':>13}{'predict/bare':>14}"
        f"{'CPU/w vs bare':>15}{'inline CPU/w':>14}{'dropped':>9}"
    )
    for report in summary:
        bare_cpu = report.bare.cpu_us_per_window
        inline = report.edgefleet_inline
        ours_cpu = report.edgefleet.cpu_us_per_window
        inline_cpu = None if inline is None else inline.cpu_us_per_window
        cpu = "-" if bare_cpu is None or ours_cpu is None else f"{ours_cpu / bare_cpu:.2f}x"
        cpu_inline = "-" if bare_cpu is None or inline_cpu is None else f"{inline_cpu / bare_cpu:.2f}x"
        inline_ratio = "-" if report.inline_ratio is None else f"{report.inline_ratio:.3f}x"
        verdict = "ok" if report.meets_target else "below"
        print(
            f"{Path(report.model_path).name:<26}{report.ratio:>14.3f}x{verdict:>9}{inline_ratio:>13}"
            f"{report.predict_ratio:>13.3f}x{cpu:>15}{cpu_inline:>14}{report.dropped:>9}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
