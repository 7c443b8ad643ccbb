"""The contract every runtime backend plugin implements.

A :class:`Backend` knows one model format and one inference library; ``open`` turns a model
file into a :class:`BackendSession`, which runs *raw* tensors (integer tensors stay integer)
for a whole batch. Conversion between caller space and tensor space (float32, quantization,
NaN policy, state) is the :class:`~edgefleet.runtime.model.Model`'s job, so backends stay small.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgefleet.errors import ModelError, ModelLoadError
from edgefleet.runtime.tensors import ModelFormat, TensorSpec
from edgefleet.types import AnyArray

__all__ = [
    "Backend",
    "BackendSession",
    "OpenOptions",
    "batched_inputs",
    "custom_op_error",
    "run_looped",
]


@dataclass(frozen=True)
class OpenOptions:
    """How to open a model. ``threads`` is LiteRT ``num_threads`` / ONNX intra-op threads."""

    providers: Sequence[str] | None = None
    threads: int | None = None
    inter_op_threads: int | None = None


class BackendSession(ABC):
    """One opened model. Not thread-safe: the owning Model serialises calls."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    providers: list[str]
    native_batch: bool = True
    """False when ``run`` feeds a batch to the runtime one sample at a time (a model whose batch
    axis is fixed at 1 and cannot be resized): a caller may then do per-sample work between runs."""

    @abstractmethod
    def run(self, feeds: Mapping[str, AnyArray], batch: int) -> dict[str, AnyArray]:
        """Run raw tensors. ``feeds`` hold every input in its own dtype; inputs listed by
        :func:`batched_inputs` have ``batch`` rows, whatever the model's declared batch dimension."""

    def close(self) -> None:  # noqa: B027 - optional hook; most runtimes free on garbage collection
        """Release native resources."""


class Backend(ABC):
    """A plugin: ``type`` is its registry key, ``format``/``extensions`` what it loads."""

    type: ClassVar[str]
    format: ClassVar[ModelFormat]
    extensions: ClassVar[tuple[str, ...]]
    install_hint: ClassVar[str]

    @classmethod
    @abstractmethod
    def runtime_version(cls) -> str | None:
        """``"<package> <version>"`` of the inference library in use, or None when none is installed."""

    @abstractmethod
    def open(self, path: Path, content: bytes, options: OpenOptions) -> BackendSession:
        """Open ``content`` (the bytes of ``path``); raise ModelLoadError on any failure."""


def batched_inputs(specs: Sequence[TensorSpec]) -> frozenset[str]:
    """Inputs whose first dimension is a batch dimension: dynamic, or fixed to 1.

    Scalars and inputs with a fixed first dimension > 1 are passed whole to every sample.
    """
    return frozenset(s.name for s in specs if s.shape and (s.shape[0] is None or s.shape[0] == 1))


def run_looped(
    run_one: Callable[[Mapping[str, AnyArray]], dict[str, AnyArray]],
    feeds: Mapping[str, AnyArray],
    batched: frozenset[str],
    batch: int,
) -> dict[str, AnyArray]:
    """Run a batch one sample at a time (models that only take batch 1) and concatenate.

    ``run_one`` must return arrays the caller owns (not a buffer the runtime reuses): they are
    kept until the last sample has run, then joined in one copy per output.
    """
    whole = {name: arr for name, arr in feeds.items() if name not in batched}
    cut = [(name, arr) for name, arr in feeds.items() if name in batched]
    results: list[dict[str, AnyArray]] = []
    append = results.append
    for i in range(batch):
        sample = dict(whole)
        for name, arr in cut:
            sample[name] = arr[i : i + 1]
        append(run_one(sample))
    outputs: dict[str, AnyArray] = {}
    if not results:
        return outputs
    for name, first in results[0].items():
        arrays = [result[name] for result in results]
        shape = first.shape
        for arr in arrays:
            if arr.shape != shape:
                raise ModelError(
                    f"output {name!r} changes shape between samples ({shape} vs {arr.shape}); "
                    "the batch cannot be run one sample at a time",
                    hint="pass one sample per predict() call for this model",
                )
        # a 0-d output is one value per sample
        outputs[name] = np.stack(arrays) if first.ndim == 0 else np.concatenate(arrays)
    return outputs


_CUSTOM_OP_PATTERNS = (
    # onnxruntime: "Fatal error: com.acme:FancyGelu(-1) is not a registered function/op"
    re.compile(r"(?:[\w.]+:)?(?P<op>\w+)\(-?\d+\) is not a registered function/op"),
    # onnxruntime: "No Op registered for Gelux with domain_version of 17"
    re.compile(r"No Op registered for (?P<op>\w+)"),
    # LiteRT: "Encountered unresolved custom op: MyOp."
    re.compile(r"unresolved custom op: (?P<op>\w+)"),
    # LiteRT: "Node number 1 (FlexMatrixDeterminant) failed to prepare."
    re.compile(r"Node number \d+ \((?P<op>(?!TfLite)\w+)\) failed to prepare"),
    re.compile(r"Op type not registered '(?P<op>\w+)'"),
)


def custom_op_error(message: str, *, path: Path, runtime: str) -> ModelLoadError | None:
    """A ModelLoadError naming the op when ``message`` says the runtime lacks an op, else None."""
    for pattern in _CUSTOM_OP_PATTERNS:
        match = pattern.search(message)
        if match:
            op = match.group("op")
            hint = (
                "this model needs TensorFlow (Flex) ops; re-convert it with TFLITE_BUILTINS only"
                if op.startswith("Flex")
                else "re-export the model with standard ops, or use a runtime build that includes this op"
            )
            return ModelLoadError(
                f"{path}: the model uses op {op!r}, which {runtime} does not provide",
                path=str(path),
                op=op,
                hint=hint,
            )
    return None
