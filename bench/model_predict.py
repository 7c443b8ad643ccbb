"""Model.predict() throughput beside the bare runtime loop on the same model, as ratios.

    python bench/model_predict.py [--seconds 0.25] [--batch 32] [--rounds 12]

For each shipped demo model the baseline is what a hand-written loop does with the inference
library directly: for LiteRT an interpreter resized to the batch plus numpy int8 quantize /
dequantize, for ONNX Runtime ``session.run``. Both sides use one thread and the same inputs;
many short rounds alternate and each side reports its best round, so bursts of load from other
processes on a shared machine hit both sides alike. Target: ratio >= 0.9 at batch 32.
For the int8 TFLite model a second baseline feeds pre-quantized int8 and returns raw int8: the
floor for callers who already hold int8 data (float32 callers must pay for the conversion).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgefleet.runtime import load_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["basicmotions-int8.tflite", "basicmotions-fp32.onnx", "basicmotions-int8.onnx"]


def _bare_litert(path: Path, batch: int, *, prequantized: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
    interp.allocate_tensors()
    # (scale, zero point) as the untyped interpreter reports them.
    in_scale: float = inp["quantization"][0]
    in_zero: int = inp["quantization"][1]
    out_scale: float = outp["quantization"][0]
    out_zero: int = outp["quantization"][1]

    def run(x: np.ndarray) -> np.ndarray:
        q = np.clip(np.round(x / in_scale) + in_zero, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        # The interpreter is untyped: its output tensor is an ndarray (int8 for these models).
        raw: np.ndarray = interp.get_tensor(outp["index"])
        return (raw.astype(np.float32) - out_zero) * np.float32(out_scale)

    cache: dict[int, np.ndarray] = {}

    def run_prequantized(x: np.ndarray) -> np.ndarray:
        # int8 in, int8 out: the floor no float32 caller can reach (quantizing is real work).
        q = cache.get(id(x))
        if q is None:
            q = cache[id(x)] = np.clip(np.round(x / in_scale) + in_zero, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        raw: np.ndarray = interp.get_tensor(outp["index"])
        return raw

    return run_prequantized if prequantized else run


def _bare_onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: x})[0])

    return run


def _rate(fn: Callable[[np.ndarray], object], x: np.ndarray, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while True:
        fn(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * len(x) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.25, help="length of one round")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()

    print(f"batch {args.batch}, best of {args.rounds} alternating rounds of {args.seconds}s, 1 thread")
    print(f"{'model':<28} {'bare win/s':>12} {'edgefleet win/s':>16} {'ratio':>7}   int8-in/out bare, ratio")
    for name in MODELS:
        path = ROOT / "models" / "demo" / name
        if not path.is_file():
            print(f"{name:<28} missing (run `make models`)")
            continue
        model = load_model(path, threads=1)
        key = model.outputs[0].name
        x = np.random.default_rng(0).normal(size=(args.batch, 50, 6)).astype(np.float32)
        bare = _bare_litert(path, args.batch) if path.suffix == ".tflite" else _bare_onnx(path)
        # predict() is typed with any dtype; the bench compares values, whatever the float width.
        ours_out: np.ndarray = model.predict(x)[key]
        np.testing.assert_allclose(bare(x), ours_out, atol=1e-5)
        ours: Callable[[np.ndarray], object] = model.predict
        floor = _bare_litert(path, args.batch, prequantized=True) if path.suffix == ".tflite" else None
        bare_rates, our_rates, floor_rates = [], [], []
        for _ in range(args.rounds):
            bare_rates.append(_rate(bare, x, args.seconds))
            our_rates.append(_rate(ours, x, args.seconds))
            if floor is not None:
                floor_rates.append(_rate(floor, x, args.seconds))
        b, o = max(bare_rates), max(our_rates)
        extra = f"   {max(floor_rates):>9.0f}  {o / max(floor_rates):.2f}" if floor_rates else ""
        print(f"{name:<28} {b:>12.0f} {o:>16.0f} {o / b:>7.2f}{extra}")
        model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
