"""ONNX Runtime backend for ``.onnx`` models, with configurable execution providers.

Providers are asked for by full name (``CUDAExecutionProvider``) or short alias (``cuda``,
``tensorrt``, ``openvino``, ``xnnpack``, ``cpu``). One that this onnxruntime build lacks is
logged and skipped; CPU is always the last resort.

Integer-IO models: ONNX keeps scale / zero point in the graph, not on the tensor. They are
read from model metadata ``edgefleet.quantization`` (JSON ``{"tensor": {"scale": s,
"zero_point": z}}``) or, when the ``onnx`` package is installed, from the
``DequantizeLinear`` fed by an input / ``QuantizeLinear`` producing an output.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from edgefleet.errors import ModelLoadError
from edgefleet.runtime.backends.base import (
    Backend,
    BackendSession,
    OpenOptions,
    batched_inputs,
    custom_op_error,
    run_looped,
)
from edgefleet.runtime.tensors import ModelFormat, QuantParams, TensorSpec
from edgefleet.types import AnyArray

__all__ = ["PROVIDER_ALIASES", "OnnxBackend", "resolve_providers"]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
PROVIDER_ALIASES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}
QUANT_METADATA_KEY = "edgefleet.quantization"

_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


def _import_ort() -> Any | None:
    try:
        import onnxruntime
    except ImportError as exc:
        log.debug("onnxruntime unavailable: %s", exc)
        return None
    return onnxruntime


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Full provider names to use, in preference order, always ending with CPU.

    Unknown or unavailable providers are dropped with a warning that lists what is available.
    """
    chosen: list[str] = []
    for name in requested or ():
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            log.warning(
                "execution provider %r is not available in this onnxruntime build; using %s instead "
                "(available: %s)",
                name,
                CPU,
                ", ".join(available),
            )
            continue
        if full not in chosen:
            chosen.append(full)
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


class OnnxBackend(Backend):
    type: ClassVar[str] = "onnxruntime"
    format: ClassVar[ModelFormat] = "onnx"
    extensions: ClassVar[tuple[str, ...]] = (".onnx",)
    install_hint: ClassVar[str] = "pip install onnxruntime (or onnxruntime-gpu / onnxruntime-openvino)"

    @classmethod
    def runtime_version(cls) -> str | None:
        if _import_ort() is None:
            return None
        try:
            return f"onnxruntime {metadata.version('onnxruntime')}"
        except metadata.PackageNotFoundError:
            return "onnxruntime"

    def open(self, path: Path, content: bytes, options: OpenOptions) -> BackendSession:
        ort = _import_ort()
        if ort is None:
            raise ModelLoadError(
                f"{path}: cannot load an .onnx model: onnxruntime is not installed",
                path=str(path),
                hint=self.install_hint,
            )
        providers = resolve_providers(options.providers, ort.get_available_providers())
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3  # errors only; warnings become our own log lines
        if options.threads is not None:
            session_options.intra_op_num_threads = options.threads
        if options.inter_op_threads is not None:
            session_options.inter_op_num_threads = options.inter_op_threads
        try:
            session = ort.InferenceSession(content, sess_options=session_options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise _load_error(path, exc) from None
        return OnnxSession(path, content, session)


def _load_error(path: Path, exc: Exception) -> ModelLoadError:
    message = str(exc)
    op_error = custom_op_error(message, path=path, runtime="onnxruntime")
    if op_error is not None:
        return op_error
    if "protobuf parsing failed" in message or "No graph was found" in message:
        return ModelLoadError(
            f"{path}: not a valid .onnx file (protobuf parsing failed)",
            path=str(path),
            hint="the file is corrupt or truncated; copy it again or re-export the model",
        )
    return ModelLoadError(
        f"{path}: onnxruntime could not load the model: {message.strip()}",
        path=str(path),
        hint="check the model with `python -m onnx.checker` or re-export it with a supported opset",
    )


def _spec(node_arg: Any, quant: Mapping[str, QuantParams]) -> TensorSpec:
    dtype = _ONNX_TYPES.get(node_arg.type)
    if dtype is None:
        raise ModelLoadError(
            f"tensor {node_arg.name!r} has type {node_arg.type}, which edgefleet cannot feed",
            hint=f"use one of: {', '.join(sorted(_ONNX_TYPES))}",
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (node_arg.shape or ()))
    params = quant.get(node_arg.name) if dtype in ("int8", "uint8") else None
    return TensorSpec(name=node_arg.name, shape=shape, dtype=dtype, quantization=params)


def _metadata_quantization(session: Any) -> dict[str, QuantParams]:
    raw = session.get_modelmeta().custom_metadata_map.get(QUANT_METADATA_KEY)
    if not raw:
        return {}
    try:
        entries = json.loads(raw)
        return {name: QuantParams.model_validate(value) for name, value in entries.items()}
    except (ValueError, AttributeError) as exc:
        log.warning("ignoring malformed %s metadata: %s", QUANT_METADATA_KEY, exc)
        return {}


def _graph_quantization(content: bytes, inputs: set[str], outputs: set[str]) -> dict[str, QuantParams]:
    """Scale / zero point of integer graph inputs and outputs, read from Q/DQ nodes."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return {}
    try:
        model = onnx.load_model_from_string(content)
    except Exception as exc:  # a model onnxruntime accepted but onnx cannot parse
        log.debug("onnx cannot parse the model for quantization parameters: %s", exc)
        return {}
    constants: dict[str, AnyArray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    found: dict[str, QuantParams] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inputs:
            tensor = node.input[0]
        elif node.op_type == "QuantizeLinear" and node.output[0] in outputs:
            tensor = node.output[0]
        else:
            continue
        scale = constants.get(node.input[1])
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None or scale.size != 1 or (zero is not None and zero.size != 1):
            continue  # per-channel or computed parameters: not an affine IO tensor
        found[tensor] = QuantParams(
            scale=float(scale.reshape(())), zero_point=0 if zero is None else int(zero.reshape(()))
        )
    return found


class OnnxSession(BackendSession):
    def __init__(self, path: Path, content: bytes, session: Any) -> None:
        self._session = session
        in_args = session.get_inputs()
        out_args = session.get_outputs()
        quant = _graph_quantization(content, {a.name for a in in_args}, {a.name for a in out_args})
        quant.update(_metadata_quantization(session))
        self.inputs = [_spec(a, quant) for a in in_args]
        self.outputs = [_spec(a, quant) for a in out_args]
        for spec in self.inputs + self.outputs:
            if spec.dtype in ("int8", "uint8") and spec.quantization is None:
                log.info(
                    "%s: %s tensor %r has no scale/zero point; it is passed through as integers",
                    path.name,
                    spec.dtype,
                    spec.name,
                )
        self.providers = list(session.get_providers())
        self._output_names = [a.name for a in out_args]
        self._batched = batched_inputs(self.inputs)
        # ONNX Runtime cannot resize a fixed dimension: batch-1 models are looped.
        self.native_batch = all(s.shape[0] is None for s in self.inputs if s.name in self._batched)

    def run(self, feeds: Mapping[str, AnyArray], batch: int) -> dict[str, AnyArray]:
        if batch == 1 or self.native_batch:
            return self._run_one(feeds)
        return run_looped(self._run_one, feeds, self._batched, batch)

    def _run_one(self, feeds: Mapping[str, AnyArray]) -> dict[str, AnyArray]:
        results = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        self._session = None
