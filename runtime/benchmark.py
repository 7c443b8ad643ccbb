"""``edgefleet model bench``: edgefleet's inference path beside the bare runtime loop.

The paths run on the same model, batch size and thread count, alternating in short rounds
(order rotated and reversed each round) so machine noise hits all of them. Every path starts
from float32 sensor windows and ends with float32 outputs, as a user's own loop would:

* ``bare``: the backend's own API called directly on pre-made float32 batches, with the
  quantize / dequantize a hand-written loop needs for an integer model (``np.clip(np.rint(x /
  scale) + zero_point, lo, hi).astype(int8)`` in, ``(y.astype(float32) - zero_point) * scale``
  out). For ``.tflite`` a LiteRT ``Interpreter`` resized to the batch, ``set_tensor`` /
  ``invoke`` / ``get_tensor``; for ``.onnx`` an ``InferenceSession.run``. Float models need no
  conversion, so there it is the runtime call alone.
* ``bare-int8``: only for integer-input models, extra information: the same loop fed
  pre-quantized input and returning the raw integer output (no conversion at all).
* ``edgefleet``: synthetic float32 samples pushed into a :class:`StreamBuffer` in blocks of
  ``push_chunk`` samples (default 64: what the replay source hands its sink per call by default;
  a UDP datagram of 6-channel records carries at most ~46), cut into windows, batched by a
  :class:`Batcher` (``max_batch_size=batch``) and run through ``Model.predict(batch.data)``.
  The producer runs inline in the measuring thread, so its cost counts.
* ``predict``: ``Model.predict`` alone on the pre-made float32 batches, so the report can say how
  much of the gap is the model wrapper and how much the buffer and batcher.

Each iteration of a path yields ``batch`` windows; figures are windows/s and per-batch latency
percentiles, and ``ratio = edgefleet windows/s / bare windows/s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgefleet.errors import EdgefleetError
from edgefleet.runtime.batcher import Batcher
from edgefleet.runtime.model import Model, load_model
from edgefleet.runtime.ringbuffer import StreamBuffer
from edgefleet.runtime.tensors import TensorSpec
from edgefleet.types import AnyArray, FloatArray

__all__ = ["BenchReport", "BenchmarkError", "LatencyStats", "PathResult", "run_benchmark"]

TARGET_RATIO = 0.9
_ROUND_SECONDS = 0.25  # length of one alternation slice per path
_WARMUP_ITERATIONS = 3
DEFAULT_PUSH_CHUNK = 64
"""Samples per push_block: the replay source's default ``block_size`` (samples per sink call)."""
DEFAULT_CAPACITY = 4096
"""The agent's default ring buffer capacity (samples per stream)."""


class BenchmarkError(EdgefleetError):
    """The benchmark cannot run with these settings or on this model."""


class LatencyStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float


class PathResult(BaseModel):
    """One path's totals over all its rounds."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    batches: int
    windows: int
    seconds: float
    windows_per_s: float
    latency: LatencyStats


class BenchReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str
    format: str
    backend: str
    runtime: str
    batch: int
    window_length: int
    channels: int
    hop: int
    push_chunk: int
    threads: int | None
    rounds: int
    bare: PathResult
    predict: PathResult
    edgefleet: PathResult
    bare_prequantized: PathResult | None = None
    """The bare loop on pre-quantized input (integer-input models only): extra information."""
    ratio: float
    """edgefleet windows/s over bare windows/s: the figure the target applies to."""
    predict_ratio: float
    """Model.predict alone over bare: the share of the gap that is the model wrapper's."""
    median_ratio: float
    """bare p50 batch latency over edgefleet's: the ratio with scheduling stalls left out."""
    prequantized_ratio: float | None = None
    """edgefleet windows/s over the pre-quantized bare loop's (integer-input models only)."""
    target_ratio: float = TARGET_RATIO
    meets_target: bool

    def _per_window_us(self, slower: PathResult, faster: PathResult) -> float:
        return (slower.latency.p50_ms - faster.latency.p50_ms) * 1e3 / self.batch

    def render_text(self) -> str:
        threads = "runtime default" if self.threads is None else str(self.threads)
        lines = [
            f"model bench: {self.model_path} ({self.format}, {self.runtime})",
            f"  batch {self.batch}, windows {self.window_length}x{self.channels}, hop {self.hop}, "
            f"pushed in blocks of {self.push_chunk} samples, threads {threads}, "
            f"{self.rounds} alternating rounds",
            "",
            f"  {'path':<12}{'windows/s':>12}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'batches':>9}  what",
        ]
        results = [self.bare, self.predict, self.edgefleet]
        if self.bare_prequantized is not None:
            results.append(self.bare_prequantized)
        for result in results:
            lat = result.latency
            lines.append(
                f"  {result.name:<12}{result.windows_per_s:>12,.0f}{lat.p50_ms:>10.3f}{lat.p95_ms:>10.3f}"
                f"{lat.p99_ms:>10.3f}{result.batches:>9}  {result.description}"
            )
        verdict = "ok" if self.meets_target else "BELOW TARGET"
        wrapper_us = self._per_window_us(self.predict, self.bare)
        buffer_us = self._per_window_us(self.edgefleet, self.predict)
        lines += [
            "",
            f"  ratio edgefleet/bare:    {self.ratio:.3f}x (target >= {self.target_ratio:.2f}x: {verdict})",
            f"  ratio predict/bare:      {self.predict_ratio:.3f}x (Model.predict alone)",
            *(
                []
                if self.prequantized_ratio is None
                else [
                    f"  ratio edgefleet/bare-int8: {self.prequantized_ratio:.3f}x "
                    "(bare loop on pre-quantized input, no conversion: information only)"
                ]
            ),
            f"  ratio edgefleet/predict: {self.ratio / self.predict_ratio:.3f}x (the buffer + batcher share)",
            f"  median-latency ratio edgefleet/bare: {self.median_ratio:.3f}x (ignores scheduling stalls)",
            f"  added per window at the median: Model.predict {wrapper_us:.2f} us, "
            f"buffer + batcher {buffer_us:.2f} us",
        ]
        return "\n".join(lines)


def _window_shape(spec: TensorSpec, path: Path) -> tuple[int, int]:
    shape = spec.shape
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        raise BenchmarkError(
            f"{path}: input {spec.name!r} has shape {list(shape)}; expected (batch, window_length, channels) "
            "with fixed window_length and channels",
            hint="benchmark a windowed time-series model such as models/demo/basicmotions-int8.tflite",
        )
    return int(shape[1]), int(shape[2])


def _quantize(x: FloatArray, dtype: np.dtype[Any], scale: float, zero_point: int) -> AnyArray:
    """What a hand-written loop does to feed an integer model float data (plain numpy)."""
    info = np.iinfo(dtype)
    q = np.clip(np.rint(x / scale) + zero_point, info.min, info.max)
    quantized: AnyArray = q.astype(dtype)
    return quantized


def _dequantize(y: AnyArray, scale: float, zero_point: int) -> FloatArray:
    real: FloatArray = (y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return real


_Step = Callable[[int], object]


def _bare_tflite(path: Path, batches: list[FloatArray], threads: int | None) -> tuple[_Step, _Step | None]:
    """(float32 in/out step, pre-quantized step or None for a float model)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(batches[0].shape))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out_detail = interpreter.get_output_details()[0]
    out_index = out_detail["index"]
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    out_scale, out_zero_point = out_detail["quantization"]
    index = detail["index"]
    set_tensor, invoke, get_tensor = interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor
    in_quantized = dtype.kind in "iu" and bool(scale)
    out_quantized = np.dtype(out_detail["dtype"]).kind in "iu" and bool(out_scale)
    count = len(batches)

    if not in_quantized:
        feeds = [b.astype(dtype) for b in batches]

        def step_float(i: int) -> object:
            set_tensor(index, feeds[i % count])
            invoke()
            y = get_tensor(out_index)
            return _dequantize(y, float(out_scale), int(out_zero_point)) if out_quantized else y

        return step_float, None

    in_scale, in_zero_point = float(scale), int(zero_point)

    def step(i: int) -> object:
        set_tensor(index, _quantize(batches[i % count], dtype, in_scale, in_zero_point))
        invoke()
        y = get_tensor(out_index)
        return _dequantize(y, float(out_scale), int(out_zero_point)) if out_quantized else y

    prequantized = [_quantize(b, dtype, in_scale, in_zero_point) for b in batches]

    def step_prequantized(i: int) -> object:
        set_tensor(index, prequantized[i % count])
        invoke()
        return get_tensor(out_index)

    return step, step_prequantized


def _bare_onnx(
    path: Path, batches: list[FloatArray], spec: TensorSpec, out_spec: TensorSpec, threads: int | None
) -> tuple[_Step, _Step | None]:
    """(float32 in/out step, pre-quantized step or None for a float-input model)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = session.run
    dtype = spec.numpy_dtype
    out_q = out_spec.quantization
    count = len(batches)

    def to_float(outputs: list[Any]) -> object:
        y = outputs[0]
        return y if out_q is None else _dequantize(y, out_q.scale, out_q.zero_point)

    q = spec.quantization
    if q is None:
        feeds = [b if b.dtype == dtype else b.astype(dtype) for b in batches]

        def step_float(i: int) -> object:
            return to_float(run(None, {name: feeds[i % count]}))

        return step_float, None

    def step(i: int) -> object:
        return to_float(run(None, {name: _quantize(batches[i % count], dtype, q.scale, q.zero_point)}))

    prequantized = [_quantize(b, dtype, q.scale, q.zero_point) for b in batches]

    def step_prequantized(i: int) -> object:
        return run(None, {name: prequantized[i % count]})

    return step, step_prequantized


class _EdgefleetPath:
    """Synthetic stream -> StreamBuffer -> Batcher -> Model.predict, one batch per step.

    The source's blocks are made up front (views of one period of a synthetic stream, cycled),
    as the bare loop's batches are: a step measures handing blocks to ``push_block``, not making them.
    Whole blocks are pushed until a batch is complete, so a block may carry over into the next step.
    """

    def __init__(self, model: Model, batch: int, length: int, channels: int, hop: int, chunk: int) -> None:
        self.model = model
        self.batch = batch
        self.per_batch = batch * hop
        # the agent's default capacity (4096 samples per stream), or more if a batch needs it
        capacity = max(DEFAULT_CAPACITY, self.per_batch + length + chunk)
        self.buffer = StreamBuffer(
            "bench", channels, capacity, window_length=length, hop=hop, policy="drop_newest"
        )
        self.batcher = Batcher([self.buffer], max_batch_size=batch, batch_timeout=0.0)
        rng = np.random.default_rng(0)
        blocks = -(-(16 * self.per_batch + length) // chunk)
        t = np.arange(blocks * chunk)[:, None]
        waves = np.sin(t * (0.05 + 0.03 * np.arange(channels))[None, :])
        samples = (waves + 0.1 * rng.standard_normal(waves.shape)).astype(np.float32)
        stamps = np.arange(len(samples), dtype=np.float64) / 100.0
        self.blocks = [(samples[k : k + chunk], stamps[k : k + chunk]) for k in range(0, len(samples), chunk)]
        self.chunk = chunk
        self.next_block = 0
        self.pushed = 0
        self.target = length - hop  # prime: from here on every batch * hop samples complete a batch
        self._push()

    def _push(self) -> None:
        push, blocks, chunk = self.buffer.push_block, self.blocks, self.chunk
        k, pushed, target = self.next_block, self.pushed, self.target
        while pushed < target:
            samples, stamps = blocks[k]
            if push(samples, stamps) != chunk:
                raise BenchmarkError(
                    "benchmark buffer refused samples", hint="this is a bug; please report it"
                )
            pushed += chunk
            k += 1
            if k == len(blocks):
                k = 0
        self.next_block, self.pushed = k, pushed

    def step(self, i: int) -> object:
        del i
        self.target += self.per_batch
        self._push()
        got = self.batcher.next_batch(timeout=0)
        if got is None or len(got) != self.batch:
            raise BenchmarkError(
                "benchmark batcher returned no full batch", hint="this is a bug; please report it"
            )
        return self.model.predict(got.data)


def _run_slice(step: Callable[[int], object], seconds: float, durations: list[float]) -> float:
    """Run ``step`` for about ``seconds``; appends per-batch durations, returns wall time."""
    clock = time.perf_counter
    start = clock()
    i = 0
    now = start
    while now - start < seconds:
        t0 = clock()
        step(i)
        now = clock()
        durations.append(now - t0)
        i += 1
    return now - start


def _result(name: str, description: str, batch: int, durations: list[float], wall: float) -> PathResult:
    ms = np.asarray(durations) * 1e3
    p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
    return PathResult(
        name=name,
        description=description,
        batches=len(durations),
        windows=len(durations) * batch,
        seconds=wall,
        windows_per_s=len(durations) * batch / wall,
        latency=LatencyStats(p50_ms=p50, p95_ms=p95, p99_ms=p99, mean_ms=float(ms.mean())),
    )


def run_benchmark(
    model_path: Path,
    *,
    batch: int = 32,
    seconds: float = 5.0,
    backend: str | None = None,
    threads: int | None = None,
    hop: int | None = None,
    push_chunk: int | None = None,
) -> BenchReport:
    """Measure the bare runtime loop and edgefleet's path on ``model_path``; ``seconds`` per path.

    ``hop`` defaults to the window length (non-overlapping windows, the most samples pushed per
    window); ``push_chunk`` (samples per ``push_block`` call) defaults to 64, the block a replay
    source hands its sink per call by default.
    """
    if batch < 1:
        raise BenchmarkError(f"batch must be >= 1, got {batch}", hint="pass --batch 32, for example")
    if not seconds > 0:
        raise BenchmarkError(f"seconds must be > 0, got {seconds}", hint="pass --seconds 5, for example")
    path = Path(model_path)
    model = load_model(path, backend=backend, threads=threads)
    try:
        if len(model.info.inputs) != 1:
            raise BenchmarkError(
                f"{path}: the model has {len(model.info.inputs)} inputs; the benchmark feeds exactly one",
                hint="benchmark a single-input windowed model",
            )
        spec = model.info.inputs[0]
        length, channels = _window_shape(spec, path)
        hop = length if hop is None else hop
        if not 1 <= hop <= length:
            raise BenchmarkError(
                f"hop must be in 1..{length}, got {hop}", hint="leave it unset for non-overlap"
            )
        chunk = DEFAULT_PUSH_CHUNK if push_chunk is None else push_chunk
        if chunk < 1:
            raise BenchmarkError(
                f"push_chunk must be >= 1, got {chunk}", hint=f"leave it unset for {DEFAULT_PUSH_CHUNK}"
            )

        rng = np.random.default_rng(1)
        batches = [rng.standard_normal((batch, length, channels)).astype(np.float32) for _ in range(4)]
        if model.info.format == "tflite":
            bare, prequantized = _bare_tflite(path, batches, threads)
            bare_what = "LiteRT Interpreter set_tensor/invoke/get_tensor"
        else:
            bare, prequantized = _bare_onnx(path, batches, spec, model.info.outputs[0], threads)
            bare_what = "onnxruntime InferenceSession.run"
        conversions = [
            label
            for label, quantized in (
                ("numpy quantize in", spec.quantization is not None),
                ("dequantize out", model.info.outputs[0].quantization is not None),
            )
            if quantized
        ]
        bare_what += " on float32 batches" + "".join(f", {c}" for c in conversions)
        ours = _EdgefleetPath(model, batch, length, channels, hop, chunk)

        def predict_only(i: int) -> object:
            return model.predict(batches[i % len(batches)])

        steps: dict[str, Callable[[int], object]] = {
            "bare": bare,
            "predict": predict_only,
            "edgefleet": ours.step,
        }
        if prequantized is not None:
            steps["bare-int8"] = prequantized
        for i in range(_WARMUP_ITERATIONS):
            for step in steps.values():
                step(i)

        rounds = max(2, round(seconds / _ROUND_SECONDS))
        slice_s = seconds / rounds
        timings: dict[str, list[float]] = {name: [] for name in steps}
        walls = dict.fromkeys(steps, 0.0)
        names = list(steps)
        for r in range(rounds):
            # rotate and reverse the order so no path always runs first or after the same one
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order if r % 2 == 0 else reversed(order):
                walls[name] += _run_slice(steps[name], slice_s, timings[name])
        bare_result = _result("bare", bare_what, batch, timings["bare"], walls["bare"])
        predict_result = _result(
            "predict",
            "Model.predict on pre-made float32 batches",
            batch,
            timings["predict"],
            walls["predict"],
        )
        ours_result = _result(
            "edgefleet",
            "push_block -> StreamBuffer -> Batcher -> Model.predict (float32 in/out)",
            batch,
            timings["edgefleet"],
            walls["edgefleet"],
        )
        prequantized_result = (
            None
            if prequantized is None
            else _result(
                "bare-int8",
                f"{bare_what.split(' on ')[0]} on pre-quantized input, raw integer output (information only)",
                batch,
                timings["bare-int8"],
                walls["bare-int8"],
            )
        )
        return BenchReport(
            model_path=str(path),
            format=model.info.format,
            backend=model.info.backend,
            runtime=model.info.runtime,
            batch=batch,
            window_length=length,
            channels=channels,
            hop=hop,
            push_chunk=chunk,
            threads=threads,
            rounds=rounds,
            bare=bare_result,
            predict=predict_result,
            edgefleet=ours_result,
            bare_prequantized=prequantized_result,
            prequantized_ratio=None
            if prequantized_result is None
            else ours_result.windows_per_s / prequantized_result.windows_per_s,
            ratio=ours_result.windows_per_s / bare_result.windows_per_s,
            predict_ratio=predict_result.windows_per_s / bare_result.windows_per_s,
            median_ratio=bare_result.latency.p50_ms / ours_result.latency.p50_ms,
            meets_target=ours_result.windows_per_s / bare_result.windows_per_s >= TARGET_RATIO,
        )
    finally:
        model.close()
