"""Latency of the shipped BasicMotions demo models through the edgefleet runtime.

    python bench/demo_models.py [--seconds 1.0]

For batch sizes 1 and 32 it prints the median time per batch of each model (one thread) beside the
same-run baseline, the fp32 ONNX edge model, as a ratio; then the bundle overhead (preprocess +
interpret) as a fraction of one predict, and how long load_bundle / verify_bundle take.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from edgefleet.runtime import load_model
from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.bundle_verify import verify_bundle

MODELS = Path(__file__).resolve().parent.parent / "models"
BASELINE = "basicmotions-fp32.onnx"
CANDIDATES = [BASELINE, "basicmotions-int8.onnx", "basicmotions-int8.tflite", "basicmotions-cloud-fp32.onnx"]


def median_seconds(fn: Callable[[], object], budget: float) -> float:
    fn()  # warm
    times: list[float] = []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget per measurement")
    args = parser.parse_args()
    bundle = load_bundle(MODELS / "bundles" / "basicmotions-edge-onnx")
    with np.load(MODELS / "data" / "basicmotions.npz") as d:
        raw = d["X_test"][:, :50].astype(np.float32)
    windows = np.concatenate([raw, raw[:24]])[:32]

    print(f"{'model':32} {'batch':>5} {'ms/batch':>10} {'us/window':>10} {'vs fp32 onnx':>13}")
    for batch in (1, 32):
        x = bundle.preprocess(windows[:batch])
        results: dict[str, float] = {}
        for name in CANDIDATES:
            with load_model(MODELS / "demo" / name, threads=1) as model:
                results[name] = median_seconds(partial(model.predict, x), args.seconds)
        for name in CANDIDATES:
            t = results[name]
            ratio = t / results[BASELINE]
            print(f"{name:32} {batch:5d} {t * 1e3:10.3f} {t / batch * 1e6:10.1f} {ratio:12.2f}x")

    with bundle.open_model(threads=1) as model:
        x32 = bundle.preprocess(windows)
        out = model.predict(x32)
        t_predict = median_seconds(lambda: model.predict(x32), args.seconds)
        t_prep = median_seconds(lambda: bundle.preprocess(windows), args.seconds)
        t_interp = median_seconds(lambda: bundle.interpret(out), args.seconds)
    print(
        f"\nbundle overhead at batch 32 (int8 onnx): preprocess {t_prep * 1e6:.1f} us, interpret "
        f"{t_interp * 1e6:.1f} us = {(t_prep + t_interp) / t_predict:.2f}x of predict "
        f"({t_predict * 1e6:.1f} us)"
    )
    t_load = median_seconds(lambda: load_bundle(MODELS / "bundles" / "basicmotions-cloud"), args.seconds)
    t_verify = median_seconds(lambda: verify_bundle(MODELS / "bundles" / "basicmotions-cloud"), args.seconds)
    print(
        f"cloud bundle: load_bundle (hash check) {t_load * 1e3:.2f} ms, verify_bundle (load + canaries) "
        f"{t_verify * 1e3:.2f} ms = {t_verify / t_load:.1f}x of load"
    )


if __name__ == "__main__":
    main()
