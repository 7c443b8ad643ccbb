"""``edgefleet model bench``: edgefleet's inference path beside the bare runtime loop.

Any single-input ``.tflite`` / ``.onnx`` model whose input has a batch axis first and fixed other
dimensions can be measured. A windowed time-series model (input ``(batch, window_length,
channels)``) runs every path below; any other model (an image model ``[1, 128, 128, 3]``, a
feature vector ``[N, 16]``) has no stream to cut windows from, so edgefleet's path there is
``Model.predict`` - what the agent and ``cloud infer`` call - and the stream paths are left out.
A model whose batch axis is fixed (``1``) is fed that many samples per runtime call by both the
bare loop and ``Model.predict``.

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
* ``edgefleet``: edgefleet's path structured as the agent runs it. A producer thread (the
  agent's source reader) pushes synthetic float32 samples into a :class:`StreamBuffer` in blocks
  of ``push_chunk`` samples (default 64: what the replay source hands its sink per call by
  default; a UDP datagram of 6-channel records carries at most ~46) under the ``block``
  backpressure policy, so nothing is dropped (checked: ``dropped`` must be 0). The measuring
  thread is the inference worker: ``Batcher.next_batch`` (``max_batch_size=batch``, the agent's
  default 50 ms batch timeout) -> ``Model.predict(batch.data)``. LiteRT's invoke and
  onnxruntime's run release the GIL, so pushing overlaps inference, as it does in the agent.
  Figures are windows per wall second: those predicted in its rounds, corrected by the ring's
  backlog before the first round and after the last (the producer runs only in these rounds),
  i.e. the windows produced and predicted while the clock ran.
* ``edgefleet-inline``: the same push -> buffer -> batcher -> predict work with the producer
  inline in the measuring thread, so every push is on the clock (no overlap).
* ``predict``: ``Model.predict`` alone on the pre-made float32 batches, so the report can say how
  much of the gap is the model wrapper and how much the buffer and batcher.

**The 0.95x target applies to ``edgefleet`` (the agent-structured, threaded path)** for a
windowed model, since that is edgefleet's path as deployed, and to ``predict`` for any other.
It is meant for models that do real work per window (the demo's fp32 cloud model, an image
model): on a model that takes a microsecond or two per window, the ratio measures Python's
fixed cost per call rather than edgefleet. The inline figure and every path's process CPU time per window
(all threads, the runtime's own included) are printed beside it: the threaded path's second
thread is not free, and the CPU figures show what it costs.

Figures are windows/s and per-batch latency percentiles (for ``edgefleet``, one
``next_batch`` + ``predict``), and ``ratio = edgefleet windows/s / bare windows/s``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefleet.bench.model_paths import (
    BareLoop,
    BenchmarkError,
    _EdgefleetPath,
    _StepPath,
    _ThreadedPath,
    bare_loop,
)
from edgefleet.bench.report import TARGET_RATIO, BenchReport, LatencyStats, PathResult
from edgefleet.runtime.loading import load_model
from edgefleet.runtime.model import Model
from edgefleet.runtime.tensors import TensorSpec

__all__ = ["run_benchmark"]

_ROUND_SECONDS = 0.25  # length of one alternation slice per path
_WARMUP_ITERATIONS = 3
DEFAULT_PUSH_CHUNK = 64
"""Samples per push_block: the replay source's default ``block_size`` (samples per sink call)."""


def _sample_shape(spec: TensorSpec, path: Path) -> tuple[int, ...]:
    """One sample's shape: the input's shape without its (leading) batch axis, all fixed."""
    shape = spec.shape
    if len(shape) < 2 or any(d is None for d in shape[1:]):
        raise BenchmarkError(
            f"{path}: input {spec.name!r} has shape {list(shape)}; expected a batch axis first and "
            "fixed sizes after it, e.g. (batch, window_length, channels) or (batch, 128, 128, 3)",
            hint="benchmark a model with fixed input sizes, e.g. models/demo/basicmotions-int8.tflite",
        )
    return tuple(int(d) for d in shape[1:] if d is not None)


def _result(
    name: str, description: str, durations: list[float], wall: float, windows: int, cpu: float
) -> PathResult:
    ms = np.asarray(durations) * 1e3
    p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
    return PathResult(
        name=name,
        description=description,
        batches=len(durations),
        windows=windows,
        seconds=wall,
        windows_per_s=windows / wall,
        latency=LatencyStats(p50_ms=p50, p95_ms=p95, p99_ms=p99, mean_ms=float(ms.mean())),
        cpu_us_per_window=cpu / windows * 1e6 if windows else None,
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
    source hands its sink per call by default. Both apply to windowed models only.
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
                hint="benchmark a single-input model",
            )
        spec = model.info.inputs[0]
        sample = _sample_shape(spec, path)
        if len(sample) != 2:
            if hop is not None or push_chunk is not None:
                raise BenchmarkError(
                    f"{path}: --hop and --push-chunk apply to (batch, window_length, channels) models; "
                    f"this one takes {list(spec.shape)}",
                    hint="leave them out for this model",
                )
            return _run_not_windowed(model, path, sample, batch, seconds, threads)
        length, channels = sample
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
        loop = bare_loop(path, batches, threads)
        bare, prequantized = loop.step, loop.prequantized
        bare_what = _bare_description(model, loop)
        inline = _EdgefleetPath(model, batch, length, channels, hop, chunk)

        def predict_only(i: int) -> object:
            return model.predict(batches[i % len(batches)])

        threaded = _ThreadedPath(model, batch, length, channels, hop, chunk)
        try:
            paths: dict[str, _StepPath | _ThreadedPath] = {
                "bare": _StepPath(bare, batch),
                "predict": _StepPath(predict_only, batch),
                "edgefleet": threaded,
                "edgefleet-inline": _StepPath(inline.step, batch),
            }
            if prequantized is not None:
                paths["bare-int8"] = _StepPath(prequantized, batch)
            for path_run in paths.values():
                # a few batches each, so first-call costs happen before timing (a tiny slice runs one)
                for _ in range(_WARMUP_ITERATIONS):
                    path_run.run_slice(1e-9, [])
            rounds = max(2, round(seconds / _ROUND_SECONDS))
            slice_s = seconds / rounds
            timings: dict[str, list[float]] = {name: [] for name in paths}
            totals = {name: [0.0, 0, 0.0] for name in paths}  # wall, windows, cpu
            names = list(paths)
            backlog = threaded.backlog()
            threaded.consumer_cpu = 0.0  # the warm-up's is not counted
            for r in range(rounds):
                # rotate and reverse the order so no path always runs first or after the same one
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order if r % 2 == 0 else reversed(order):
                    wall, windows, cpu = paths[name].run_slice(slice_s, timings[name])
                    total = totals[name]
                    total[0] += wall
                    total[1] += windows
                    total[2] += cpu
            # count what was produced in the timed rounds: the producer runs only in edgefleet's
            # rounds, so a backlog left by the warm-up is not counted and one left at the end is
            totals["edgefleet"][1] += threaded.backlog() - backlog
            dropped = threaded.dropped
        finally:
            threaded.close()

        def result(name: str, description: str) -> PathResult:
            wall, windows, cpu = totals[name]
            return _result(name, description, timings[name], wall, int(windows), cpu)

        bare_result = result("bare", bare_what)
        predict_result = result("predict", "Model.predict on pre-made float32 batches")
        ours_result = result(
            "edgefleet",
            f"producer thread push_block ({chunk}/call, block policy) -> StreamBuffer; this thread "
            "Batcher.next_batch -> Model.predict (the agent's structure; the target figure)",
        )
        inline_result = result(
            "edgefleet-inline",
            "the same with push_block inline in this thread: no overlap (information)",
        )
        prequantized_result = (
            None
            if prequantized is None
            else result(
                "bare-int8",
                f"{bare_what.split(' on ')[0]} on pre-quantized input, raw integer output (information only)",
            )
        )
        ratio = ours_result.windows_per_s / bare_result.windows_per_s
        return BenchReport(
            model_path=str(path),
            format=model.info.format,
            backend=model.info.backend,
            runtime=model.info.runtime,
            batch=batch,
            input_shape=[length, channels],
            windowed=True,
            window_length=length,
            channels=channels,
            hop=hop,
            push_chunk=chunk,
            threads=threads,
            rounds=rounds,
            bare=bare_result,
            predict=predict_result,
            edgefleet=ours_result,
            edgefleet_inline=inline_result,
            bare_prequantized=prequantized_result,
            dropped=dropped,
            prequantized_ratio=None
            if prequantized_result is None
            else ours_result.windows_per_s / prequantized_result.windows_per_s,
            ratio=ratio,
            inline_ratio=inline_result.windows_per_s / bare_result.windows_per_s,
            predict_ratio=predict_result.windows_per_s / bare_result.windows_per_s,
            median_ratio=bare_result.latency.p50_ms / ours_result.latency.p50_ms,
            meets_target=ratio >= TARGET_RATIO and dropped == 0,
            consumer_cpu_us_per_window=threaded.consumer_cpu / ours_result.windows * 1e6
            if ours_result.windows
            else None,
        )
    finally:
        model.close()


def _bare_description(model: Model, loop: BareLoop) -> str:
    conversions = [
        label
        for label, quantized in (
            ("numpy quantize in", model.info.inputs[0].quantization is not None),
            ("dequantize out", model.info.outputs[0].quantization is not None),
        )
        if quantized
    ]
    return loop.description + " on float32 batches" + "".join(f", {c}" for c in conversions)


def _run_not_windowed(
    model: Model, path: Path, sample: tuple[int, ...], batch: int, seconds: float, threads: int | None
) -> BenchReport:
    """bare vs ``Model.predict`` on random float32 batches of ``sample``-shaped inputs, alternating."""
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((batch, *sample)).astype(np.float32) for _ in range(2)]
    loop = bare_loop(path, batches, threads)
    bare_what = _bare_description(model, loop)

    def predict_only(i: int) -> object:
        return model.predict(batches[i % len(batches)])

    paths: dict[str, _StepPath] = {
        "bare": _StepPath(loop.step, batch),
        "predict": _StepPath(predict_only, batch),
    }
    if loop.prequantized is not None:
        paths["bare-int8"] = _StepPath(loop.prequantized, batch)
    for path_run in paths.values():
        for _ in range(_WARMUP_ITERATIONS):
            path_run.run_slice(1e-9, [])
    rounds = max(2, round(seconds / _ROUND_SECONDS))
    slice_s = seconds / rounds
    timings: dict[str, list[float]] = {name: [] for name in paths}
    totals = {name: [0.0, 0, 0.0] for name in paths}
    names = list(paths)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order if r % 2 == 0 else reversed(order):
            wall, windows, cpu = paths[name].run_slice(slice_s, timings[name])
            totals[name][0] += wall
            totals[name][1] += windows
            totals[name][2] += cpu

    def result(name: str, description: str) -> PathResult:
        wall, windows, cpu = totals[name]
        return _result(name, description, timings[name], wall, int(windows), cpu)

    bare_result = result("bare", bare_what)
    predict_result = result("predict", "Model.predict on the same float32 batches (edgefleet's path here)")
    prequantized_result = (
        None
        if loop.prequantized is None
        else result("bare-int8", f"{loop.description} on pre-quantized input (information only)")
    )
    ratio = predict_result.windows_per_s / bare_result.windows_per_s
    return BenchReport(
        model_path=str(path),
        format=model.info.format,
        backend=model.info.backend,
        runtime=model.info.runtime,
        batch=batch,
        input_shape=list(sample),
        windowed=False,
        threads=threads,
        rounds=rounds,
        bare=bare_result,
        predict=predict_result,
        bare_prequantized=prequantized_result,
        prequantized_ratio=None
        if prequantized_result is None
        else predict_result.windows_per_s / prequantized_result.windows_per_s,
        ratio=ratio,
        predict_ratio=ratio,
        median_ratio=bare_result.latency.p50_ms / predict_result.latency.p50_ms,
        meets_target=ratio >= TARGET_RATIO,
    )
