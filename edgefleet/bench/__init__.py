"""Benchmarks behind ``edgefleet model bench``: edgefleet's inference path beside the bare runtime loop.

Not part of the device runtime: the agent never imports this package, and the CLI imports it
only when ``model bench`` runs. It calls LiteRT and ONNX Runtime directly, as a user's own
hand-written loop would, to have a baseline measured in the same run.
"""

from __future__ import annotations

from edgefleet.bench.model_bench import run_benchmark
from edgefleet.bench.model_paths import BareLoop, BenchmarkError, bare_loop
from edgefleet.bench.report import TARGET_RATIO, BenchReport, LatencyStats, PathResult

__all__ = [
    "TARGET_RATIO",
    "BareLoop",
    "BenchReport",
    "BenchmarkError",
    "LatencyStats",
    "PathResult",
    "bare_loop",
    "run_benchmark",
]
