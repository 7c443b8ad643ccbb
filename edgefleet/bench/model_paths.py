"""The paths :func:`~edgefleet.bench.run_benchmark` times, each one a ``run_slice``.

The bare runtime loops (LiteRT / onnxruntime called directly, with the hand-written conversions
a user's own loop needs), edgefleet's path structured as the agent runs it (:class:`_ThreadedPath`:
a producer thread pushing, the measuring thread batching and predicting) and the same work with
the producer inline (:class:`_EdgefleetPath`). See the benchmark module for what each measures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.errors import EdgefleetError
from edgefleet.runtime.batcher import Batch, Batcher
from edgefleet.runtime.encoding import InputEncoder, encode_overlapping_windows
from edgefleet.runtime.model import Model
from edgefleet.runtime.ringbuffer import StreamBuffer
from edgefleet.types import AnyArray, FloatArray

__all__ = ["BareLoop", "BenchmarkError", "bare_loop"]

DEFAULT_CAPACITY = 4096
"""The agent's default ring buffer capacity (samples per stream)."""
AGENT_BATCH_TIMEOUT = 0.05
"""The agent's default ``batching.batch_timeout_s``."""


class BenchmarkError(EdgefleetError):
    """The benchmark cannot run with these settings or on this model."""


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


@dataclass(frozen=True)
class BareLoop:
    """A hand-written loop's step on one of the pre-made float32 batches (``step(i)`` runs batch
    ``i % len(batches)`` and returns float32 outputs), and the same on pre-quantized input
    returning the raw integer output (integer-input models only, else None)."""

    step: _Step
    prequantized: _Step | None
    description: str


def bare_loop(path: Path, batches: list[FloatArray], threads: int | None = None) -> BareLoop:
    """The backend's own API called directly on ``batches``, as a user's loop would call it.

    A model whose batch axis is fixed (e.g. ``[1, 128, 128, 3]``) is fed that many samples per
    call, looping over the batch, as a hand-written loop for such a model must.
    """
    if Path(path).suffix.lower() == ".tflite":
        step, prequantized = _bare_tflite(Path(path), batches, threads)
        what = "LiteRT Interpreter set_tensor/invoke/get_tensor"
    else:
        step, prequantized = _bare_onnx(Path(path), batches, threads)
        what = "onnxruntime InferenceSession.run"
    return BareLoop(step, prequantized, what)


def _per_call(batches: list[FloatArray], fixed: int | None) -> int:
    """Samples per runtime call: the whole batch, or the model's fixed batch size."""
    size = int(batches[0].shape[0])
    if fixed is None or fixed == size:
        return size
    if fixed < 1 or size % fixed:
        raise BenchmarkError(
            f"the model's batch axis is fixed at {fixed}; a batch of {size} is not a multiple of it",
            hint=f"pass --batch {fixed} or a multiple of it",
        )
    return fixed


def _looped(run_one: Callable[[AnyArray], AnyArray], per_call: int) -> Callable[[AnyArray], AnyArray]:
    """``run_one`` over a batch cut into ``per_call``-sample slices, outputs concatenated."""

    def run(x: AnyArray) -> AnyArray:
        if x.shape[0] == per_call:
            return run_one(x)
        return np.concatenate([run_one(x[k : k + per_call]) for k in range(0, x.shape[0], per_call)])

    return run


def _bare_tflite(path: Path, batches: list[FloatArray], threads: int | None) -> tuple[_Step, _Step | None]:
    """(float32 in/out step, pre-quantized step or None for a float model)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    detail = interpreter.get_input_details()[0]
    declared = [int(d) for d in detail.get("shape_signature", detail["shape"])]
    fixed = declared[0] if declared and declared[0] > 0 else None
    per_call = _per_call(batches, fixed)
    if fixed is None:
        interpreter.resize_tensor_input(detail["index"], [per_call, *batches[0].shape[1:]])
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

    def invoke_one(x: AnyArray) -> AnyArray:
        set_tensor(index, x)
        invoke()
        y: AnyArray = get_tensor(out_index)
        return y if per_call == len(batches[0]) else y.copy()  # get_tensor's buffer is reused

    run = _looped(invoke_one, per_call)

    if not in_quantized:
        feeds = [b.astype(dtype) for b in batches]

        def step_float(i: int) -> object:
            y = run(feeds[i % count])
            return _dequantize(y, float(out_scale), int(out_zero_point)) if out_quantized else y

        return step_float, None

    in_scale, in_zero_point = float(scale), int(zero_point)

    def step(i: int) -> object:
        y = run(_quantize(batches[i % count], dtype, in_scale, in_zero_point))
        return _dequantize(y, float(out_scale), int(out_zero_point)) if out_quantized else y

    prequantized = [_quantize(b, dtype, in_scale, in_zero_point) for b in batches]

    def step_prequantized(i: int) -> object:
        return run(prequantized[i % count])

    return step, step_prequantized


def _bare_onnx(path: Path, batches: list[FloatArray], threads: int | None) -> tuple[_Step, _Step | None]:
    """(float32 in/out step, pre-quantized step or None for a float-input model).

    The quantization of an integer input or output is read as a hand-written loop would: from
    the graph's ``QuantizeLinear`` / ``DequantizeLinear`` around it, via edgefleet's model info.
    """
    import onnxruntime as ort

    from edgefleet.runtime.loading import load_model

    with load_model(path) as model:
        spec, out_spec = model.info.inputs[0], model.info.outputs[0]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    declared = session.get_inputs()[0].shape
    fixed = declared[0] if declared and isinstance(declared[0], int) and declared[0] > 0 else None
    per_call = _per_call(batches, fixed)
    name = session.get_inputs()[0].name
    session_run = session.run
    dtype = spec.numpy_dtype
    out_q = out_spec.quantization
    count = len(batches)

    def run_one(x: AnyArray) -> AnyArray:
        y: AnyArray = session_run(None, {name: x})[0]
        return y

    run = _looped(run_one, per_call)

    def to_float(y: AnyArray) -> object:
        return y if out_q is None else _dequantize(y, out_q.scale, out_q.zero_point)

    q = spec.quantization
    if q is None:
        feeds = [b if b.dtype == dtype else b.astype(dtype) for b in batches]

        def step_float(i: int) -> object:
            return to_float(run(feeds[i % count]))

        return step_float, None

    def step(i: int) -> object:
        return to_float(run(_quantize(batches[i % count], dtype, q.scale, q.zero_point)))

    prequantized = [_quantize(b, dtype, q.scale, q.zero_point) for b in batches]

    def step_prequantized(i: int) -> object:
        return run(prequantized[i % count])

    return step, step_prequantized


def _synthetic_blocks(
    per_batch: int, channels: int, chunk: int
) -> list[tuple[FloatArray, npt.NDArray[np.float64]]]:
    """A synthetic stream (16 batches' worth, cycled) cut into ``chunk``-sample blocks, made up front."""
    rng = np.random.default_rng(0)
    blocks = -(-(16 * per_batch) // chunk)
    t = np.arange(blocks * chunk)[:, None]
    waves = np.sin(t * (0.05 + 0.03 * np.arange(channels))[None, :])
    samples = (waves + 0.1 * rng.standard_normal(waves.shape)).astype(np.float32)
    stamps = np.arange(len(samples), dtype=np.float64) / 100.0
    return [(samples[k : k + chunk], stamps[k : k + chunk]) for k in range(0, len(samples), chunk)]


def _predict(model: Model, encoder: InputEncoder | None, batch: Batch) -> object:
    codes = batch.codes
    if codes is not None and encoder is not None:
        return model.predict_encoded(codes, encoder)
    return model.predict(batch.data)


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
        self.encoder = encode_overlapping_windows(model, self.buffer)
        self.blocks = _synthetic_blocks(self.per_batch + length, channels, chunk)
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
        return _predict(self.model, self.encoder, got)


class _ThreadedPath:
    """The agent's structure: a producer thread pushes blocks, the measuring thread batches and predicts.

    The producer runs only during this path's rounds (between them it parks, or waits for room
    under the ``block`` policy), so it does not take CPU from the other paths.
    """

    def __init__(self, model: Model, batch: int, length: int, channels: int, hop: int, chunk: int) -> None:
        self.model = model
        capacity = max(DEFAULT_CAPACITY, batch * hop + length + chunk)
        self.buffer = StreamBuffer("bench", channels, capacity, window_length=length, hop=hop, policy="block")
        self.batcher = Batcher([self.buffer], max_batch_size=batch, batch_timeout=AGENT_BATCH_TIMEOUT)
        self.encoder = encode_overlapping_windows(model, self.buffer)
        self.blocks = _synthetic_blocks(batch * hop + length, channels, chunk)
        self.chunk = chunk
        self._running = False  # read by the producer on every block: a plain attribute is cheapest
        self._go = threading.Event()
        self._stopping = False
        self._failure: BaseException | None = None
        self.consumer_cpu = 0.0
        """CPU seconds of the measuring thread alone (next_batch + predict), over all rounds."""
        self._thread = threading.Thread(target=self._produce, name="bench-producer", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        push, blocks, chunk, buffer = self.buffer.push_block, self.blocks, self.chunk, self.buffer
        count = len(blocks)
        k = 0
        try:
            while True:
                if not self._running:
                    self._go.wait()
                    if self._stopping:
                        return
                    continue
                samples, stamps = blocks[k]
                if push(samples, stamps) != chunk and not buffer.closed:
                    raise BenchmarkError(
                        "benchmark buffer refused samples under the block policy",
                        hint="this is a bug; please report it",
                    )
                k += 1
                if k == count:
                    k = 0
        except BaseException as exc:  # reported by the measuring thread
            self._failure = exc

    def _start(self) -> None:
        self._running = True
        self._go.set()

    def _park(self) -> None:
        self._go.clear()
        self._running = False

    def backlog(self) -> int:
        """Windows complete but not yet predicted (call while the producer is parked)."""
        return self.buffer.windows_ready() + self.batcher.pending

    def run_slice(self, seconds: float, durations: list[float]) -> tuple[float, int, float]:
        """Run for about ``seconds``: (wall seconds, windows predicted, process CPU seconds)."""
        clock = time.perf_counter
        next_batch, model, encoder = self.batcher.next_batch, self.model, self.encoder
        cpu0 = time.process_time()
        own0 = time.thread_time()
        start = now = clock()
        self._start()
        windows = 0
        try:
            while now - start < seconds:
                t0 = clock()
                got = next_batch(timeout=5.0)
                if got is None:
                    raise BenchmarkError(
                        "the benchmark producer thread delivered no batch in 5 s"
                        + ("" if self._failure is None else f": {self._failure!r}"),
                        hint="this is a bug; please report it",
                    )
                _predict(model, encoder, got)
                now = clock()
                durations.append(now - t0)
                windows += len(got)
        finally:
            self._park()
        cpu = time.process_time() - cpu0
        self.consumer_cpu += time.thread_time() - own0
        return now - start, windows, cpu

    @property
    def dropped(self) -> int:
        return self.buffer.stats.dropped

    def close(self) -> None:
        self._stopping = True
        self._running = False
        self._go.set()
        self.buffer.close()  # wakes a producer waiting for room
        self._thread.join(timeout=5.0)


class _StepPath:
    """A path run as a loop of steps, each one batch of ``batch`` windows."""

    def __init__(self, step: Callable[[int], object], batch: int) -> None:
        self.step = step
        self.batch = batch
        self.i = 0

    def run_slice(self, seconds: float, durations: list[float]) -> tuple[float, int, float]:
        clock = time.perf_counter
        step = self.step
        i = self.i
        cpu0 = time.process_time()
        start = now = clock()
        while now - start < seconds:
            t0 = clock()
            step(i)
            now = clock()
            durations.append(now - t0)
            i += 1
        cpu = time.process_time() - cpu0
        done = i - self.i
        self.i = i
        return now - start, done * self.batch, cpu
