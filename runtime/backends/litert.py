"""LiteRT backend for ``.tflite`` models (``ai_edge_litert``; ``tflite_runtime`` as a fallback).

``tflite_runtime`` wheels are built against numpy 1.x, so the fallback needs ``numpy<2``
(``pip install 'edgefleet[tflite-runtime]'``). Interpreters are cached per set of input
shapes: a model with a fixed batch of 1 is resized to the caller's batch once, and the
resized interpreter is reused for every later batch of that size.
"""

from __future__ import annotations

import importlib
import logging
from collections import OrderedDict
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgefleet.errors import ModelInputError, ModelLoadError
from edgefleet.runtime.backends.base import (
    Backend,
    BackendSession,
    OpenOptions,
    batched_inputs,
    custom_op_error,
    run_looped,
)
from edgefleet.runtime.native_stderr import filtered_native_stderr
from edgefleet.runtime.tensors import ModelFormat, QuantParams, TensorSpec, format_shape
from edgefleet.types import AnyArray

__all__ = ["LiteRTBackend"]

log = logging.getLogger(__name__)

# Import path and distribution name of each LiteRT flavour, preferred first.
_RUNTIMES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)
_MAX_CACHED_SHAPES = 8
ShapeKey = tuple[tuple[int, ...], ...]


def _find_interpreter() -> tuple[Any, str] | None:
    """(Interpreter class, "package version") of the first importable LiteRT flavour."""
    for module_name, dist in _RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a wheel built for another numpy can fail with more than ImportError
            log.debug("LiteRT flavour %s unavailable: %s", module_name, exc)
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return module.Interpreter, f"{dist} {version}"
    return None


class LiteRTBackend(Backend):
    type: ClassVar[str] = "litert"
    format: ClassVar[ModelFormat] = "tflite"
    extensions: ClassVar[tuple[str, ...]] = (".tflite",)
    install_hint: ClassVar[str] = (
        "pip install ai-edge-litert (or tflite-runtime, which needs numpy<2: "
        "pip install 'edgefleet[tflite-runtime]')"
    )

    @classmethod
    def runtime_version(cls) -> str | None:
        found = _find_interpreter()
        return None if found is None else found[1]

    def open(self, path: Path, content: bytes, options: OpenOptions) -> BackendSession:
        found = _find_interpreter()
        if found is None:
            raise ModelLoadError(
                f"{path}: cannot load a .tflite model: no LiteRT runtime is installed",
                path=str(path),
                hint=self.install_hint,
            )
        interpreter_cls, runtime = found
        if options.providers:
            log.warning(
                "execution providers %s ignored: they apply to ONNX models, not %s",
                list(options.providers),
                path.name,
            )
        return LiteRTSession(path, content, interpreter_cls, runtime, options.threads)


def _spec(detail: Mapping[str, Any], name: str) -> TensorSpec:
    signature = detail.get("shape_signature")
    dims = signature if signature is not None and len(signature) else detail["shape"]
    shape = tuple(None if int(d) < 0 else int(d) for d in dims)
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quant = None
    if dtype.kind in "iu" and scale:
        quant = QuantParams(scale=float(scale), zero_point=int(zero_point))
    return TensorSpec(name=name, shape=shape, dtype=dtype.name, quantization=quant)


class LiteRTSession(BackendSession):
    def __init__(
        self, path: Path, content: bytes, interpreter_cls: Any, runtime: str, threads: int | None
    ) -> None:
        self._path = path
        self._content = content
        self._interpreter_cls = interpreter_cls
        self._runtime = runtime
        self._threads = threads
        with filtered_native_stderr():
            base = self._new_interpreter()
            try:
                base.allocate_tensors()
            except (RuntimeError, ValueError) as exc:
                raise self._load_error(exc) from None

        # Prefer the signature's names ("window", "scores") over internal tensor names
        # ("serving_default_window:0") when the model has exactly one signature.
        in_names: dict[int, str] = {}
        out_names: dict[int, str] = {}
        in_details = base.get_input_details()
        out_details = base.get_output_details()
        signatures = base.get_signature_list()
        if len(signatures) == 1:
            runner = base.get_signature_runner(next(iter(signatures)))
            sig_in = runner.get_input_details()
            sig_out = runner.get_output_details()
            in_names = {int(d["index"]): key for key, d in sig_in.items()}
            out_names = {int(d["index"]): key for key, d in sig_out.items()}
            # Signature order is the order the model's author wrote the inputs in.
            by_index = {int(d["index"]): d for d in in_details + out_details}
            if set(in_names) <= set(by_index) and set(out_names) <= set(by_index):
                in_details = [by_index[int(d["index"])] for d in sig_in.values()]
                out_details = [by_index[int(d["index"])] for d in sig_out.values()]
        self.inputs = [_spec(d, in_names.get(int(d["index"]), d["name"])) for d in in_details]
        self.outputs = [_spec(d, out_names.get(int(d["index"]), d["name"])) for d in out_details]
        self.providers = ["cpu"]  # LiteRT on CPU (its default XNNPACK delegate); no GPU delegate is applied
        self._input_index = {s.name: int(d["index"]) for s, d in zip(self.inputs, in_details, strict=True)}
        self._input_pairs = list(self._input_index.items())
        self._input_names = list(self._input_index)
        self._output_index = [
            (s.name, int(d["index"])) for s, d in zip(self.outputs, out_details, strict=True)
        ]
        self._batched = batched_inputs(self.inputs)
        self._fixed_one = frozenset(s.name for s in self.inputs if s.shape and s.shape[0] == 1)
        self._base = base
        self._base_key: ShapeKey = tuple(tuple(int(x) for x in d["shape"]) for d in in_details)
        # None marks a shape set the model refused to be resized to: those batches are looped.
        self._cache: OrderedDict[ShapeKey, Any | None] = OrderedDict()
        self._last: tuple[ShapeKey, Any] = (self._base_key, base)

    def _new_interpreter(self) -> Any:
        try:
            return self._interpreter_cls(model_content=self._content, num_threads=self._threads)
        except (RuntimeError, ValueError) as exc:
            raise self._load_error(exc) from None

    def _load_error(self, exc: Exception) -> ModelLoadError:
        message = str(exc)
        op_error = custom_op_error(message, path=self._path, runtime=self._runtime)
        if op_error is not None:
            return op_error
        if "flatbuffer" in message.lower():
            return ModelLoadError(
                f"{self._path}: not a valid .tflite file ({message.strip()})",
                path=str(self._path),
                hint="the file is corrupt or truncated; copy it again or rebuild the model",
            )
        return ModelLoadError(
            f"{self._path}: {self._runtime} could not load the model: {message.strip()}",
            path=str(self._path),
            hint="check that the model was converted for this LiteRT version",
        )

    def run(self, feeds: Mapping[str, AnyArray], batch: int) -> dict[str, AnyArray]:
        key = tuple([feeds[name].shape for name in self._input_names])
        # Steady state sends the same shapes every call: skip the cache bookkeeping then.
        interpreter = self._last[1] if key == self._last[0] else self._interpreter_for(key, feeds, batch)
        if interpreter is not None:
            self._last = (key, interpreter)
            return self._invoke(interpreter, feeds)
        if batch > 1:
            return run_looped(self._run_one, feeds, self._batched, batch)
        raise ModelInputError(
            f"{self._path.name}: the model cannot take inputs of shapes "
            + ", ".join(f"{n} {format_shape(s)}" for n, s in zip(self._input_index, key, strict=True)),
            tensor=next(iter(self._input_index), None),
            expected=", ".join(format_shape(s.shape) for s in self.inputs),
            got=", ".join(format_shape(s) for s in key),
            hint="pass inputs with the shapes the model was converted for",
        )

    def _run_one(self, feeds: Mapping[str, AnyArray]) -> dict[str, AnyArray]:
        return self.run(feeds, 1)

    def _interpreter_for(self, key: ShapeKey, feeds: Mapping[str, AnyArray], batch: int) -> Any | None:
        if key == self._base_key:
            return self._base
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        interpreter = self._resized(key)
        if interpreter is not None and batch > 1 and self._fixed_one & self._batched:
            # The model declared batch 1; resizing worked, but only trust it if it gives the
            # same answers as one-sample-at-a-time (a hard-coded reshape could mix samples).
            resized = self._invoke(interpreter, feeds)
            looped = run_looped(self._run_one, feeds, self._batched, batch)
            if not all(_close(resized[n], looped[n]) for n in looped):
                log.warning(
                    "%s: resizing to batch %d changes results; running samples one at a time",
                    self._path.name,
                    batch,
                )
                interpreter = None
        self._cache[key] = interpreter
        if len(self._cache) > _MAX_CACHED_SHAPES:
            self._cache.popitem(last=False)
        return interpreter

    def _resized(self, key: ShapeKey) -> Any | None:
        with filtered_native_stderr():
            interpreter = self._new_interpreter()
            try:
                for index, shape, base in zip(self._input_index.values(), key, self._base_key, strict=True):
                    if shape != base:
                        interpreter.resize_tensor_input(index, list(shape), strict=False)
                interpreter.allocate_tensors()
            except (RuntimeError, ValueError) as exc:
                log.info("%s: cannot resize inputs to %s (%s); looping instead", self._path.name, key, exc)
                return None
        return interpreter

    def _invoke(self, interpreter: Any, feeds: Mapping[str, AnyArray]) -> dict[str, AnyArray]:
        for name, index in self._input_pairs:
            interpreter.set_tensor(index, feeds[name])
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in self._output_index}

    def close(self) -> None:
        self._cache.clear()
        self._base = None
        self._last = ((), None)


def _close(a: AnyArray, b: AnyArray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True))
    # Integer outputs of a quantized model may differ by one step between kernels.
    return bool(np.abs(a.astype(np.int64) - b.astype(np.int64)).max(initial=0) <= 1)
