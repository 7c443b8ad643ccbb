"""``edgefleet model bench``: edgefleet's inference path beside the bare runtime loop.

Three paths run on the same model, batch size and thread count, alternating in short rounds
(order rotated and reversed each round) so machine noise hits all of them:

* ``bare``: the backend's own API on pre-made batches, nothing else. For ``.tflite`` a LiteRT
  ``Interpreter`` resized to the batch, fed pre-quantized input with ``set_tensor`` / ``invoke`` /
  ``get_tensor``; for ``.onnx`` an ``InferenceSession.run`` on the input dtype the model declares.
* ``edgefleet``: synthetic sensor samples pushed into a :class:`StreamBuffer`, cut into windows,
  batched by a :class:`Batcher` (``max_batch_size=batch``) and run through
  ``load_model(path).predict(batch.data)`` (which quantizes float32 in and dequantizes out).
* ``predict``: ``Model.predict`` alone on the pre-made float32 batches, so the report can say how
  much of the gap is the model wrapper and how much the buffer and batcher.

Each iteration of either path yields ``batch`` windows; figures are windows/s and per-batch
latency percentiles, and ``ratio = edgefleet windows/s / bare windows/s``.
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
    ratio: float
    """edgefleet windows/s over bare windows/s: the figure the target applies to."""
    predict_ratio: float
    """Model.predict alone over bare: the share of the gap that is the model wrapper's."""
    median_ratio: float
    """bare p50 batch latency over edgefleet's: the ratio with scheduling stalls left out."""
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
        for result in (self.bare, self.predict, self.edgefleet):
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
    info = np.iinfo(dtype)
    q = np.clip(np.rint(x / scale) + zero_point, info.min, info.max)
    quantized: AnyArray = q.astype(dtype)
    return quantized


def _bare_tflite(path: Path, batches: list[FloatArray], threads: int | None) -> Callable[[int], object]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(batches[0].shape))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out_index = interpreter.get_output_details()[0]["index"]
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind in "iu" and scale:
        feeds = [_quantize(b, dtype, float(scale), int(zero_point)) for b in batches]
    else:
        feeds = [b.astype(dtype) for b in batches]
    index = detail["index"]

    def step(i: int) -> object:
        interpreter.set_tensor(index, feeds[i % len(feeds)])
        interpreter.invoke()
        return interpreter.get_tensor(out_index)

    return step


def _bare_onnx(
    path: Path, batches: list[FloatArray], spec: TensorSpec, threads: int | None
) -> Callable[[int], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = spec.numpy_dtype
    if spec.quantization is not None:
        q = spec.quantization
        feeds = [_quantize(b, dtype, q.scale, q.zero_point) for b in batches]
    else:
        feeds = [b.astype(dtype) for b in batches]

    def step(i: int) -> object:
        return session.run(None, {name: feeds[i % len(feeds)]})

    return step


class _EdgefleetPath:
    """Synthetic stream -> StreamBuffer -> Batcher -> Model.predict, one batch per step."""

    def __init__(self, model: Model, batch: int, length: int, channels: int, hop: int, chunk: int) -> None:
        self.model = model
        self.batch = batch
        self.hop = hop
        self.chunk = chunk
        per_batch = batch * hop
        self.buffer = StreamBuffer(
            "bench", channels, per_batch + length, window_length=length, hop=hop, policy="drop_newest"
        )
        self.batcher = Batcher([self.buffer], max_batch_size=batch, batch_timeout=0.0)
        # a period of the synthetic stream; cycled so no sample is generated inside the loop
        rng = np.random.default_rng(0)
        t = np.arange(16 * per_batch + length)[:, None]
        waves = np.sin(t * (0.05 + 0.03 * np.arange(channels))[None, :])
        self.samples = (waves + 0.1 * rng.standard_normal(waves.shape)).astype(np.float32)
        self.stamps = np.arange(len(self.samples), dtype=np.float64) / 100.0
        self.cursor = 0
        self._push(length - hop)  # prime: from here on every batch * hop samples complete a batch

    def _push(self, n: int) -> None:
        while n > 0:
            take = min(n, self.chunk, len(self.samples) - self.cursor)
            end = self.cursor + take
            accepted = self.buffer.push_block(self.samples[self.cursor : end], self.stamps[self.cursor : end])
            if accepted != take:
                raise BenchmarkError(
                    "benchmark buffer refused samples", hint="this is a bug; please report it"
                )
            self.cursor = 0 if end == len(self.samples) else end
            n -= take

    def step(self, i: int) -> object:
        del i
        self._push(self.batch * self.hop)
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
    window); ``push_chunk`` (samples per ``push_block`` call) defaults to ``hop``.
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
        chunk = hop if push_chunk is None else push_chunk
        if chunk < 1:
            raise BenchmarkError(f"push_chunk must be >= 1, got {chunk}", hint="leave it unset for one hop")

        rng = np.random.default_rng(1)
        batches = [rng.standard_normal((batch, length, channels)).astype(np.float32) for _ in range(4)]
        if model.info.format == "tflite":
            bare = _bare_tflite(path, batches, threads)
            bare_what = "LiteRT Interpreter set_tensor/invoke/get_tensor, pre-quantized input"
        else:
            bare = _bare_onnx(path, batches, spec, threads)
            bare_what = "onnxruntime InferenceSession.run on pre-made input"
        ours = _EdgefleetPath(model, batch, length, channels, hop, chunk)

        def predict_only(i: int) -> object:
            return model.predict(batches[i % len(batches)])

        steps: dict[str, Callable[[int], object]] = {
            "bare": bare,
            "predict": predict_only,
            "edgefleet": ours.step,
        }
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
            order = names[r % 3 :] + names[: r % 3]
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
            ratio=ours_result.windows_per_s / bare_result.windows_per_s,
            predict_ratio=predict_result.windows_per_s / bare_result.windows_per_s,
            median_ratio=bare_result.latency.p50_ms / ours_result.latency.p50_ms,
            meets_target=ours_result.windows_per_s / bare_result.windows_per_s >= TARGET_RATIO,
        )
    finally:
        model.close()
