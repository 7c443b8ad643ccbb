"""What the runtime tells callers about a model: tensor specs and model info (pydantic)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelFormat", "ModelInfo", "QuantParams", "TensorSpec", "format_shape"]

ModelFormat = Literal["tflite", "onnx"]


class QuantParams(BaseModel):
    """Affine quantization of an integer tensor: ``real = scale * (q - zero_point)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: float
    zero_point: int


class TensorSpec(BaseModel):
    """One model input or output as the model declares it.

    ``shape`` uses ``None`` for a dynamic dimension; ``dtype`` is the tensor's own numpy
    dtype name (``int8`` for a quantized tensor, even though callers see float32).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    quantization: QuantParams | None = None

    @property
    def numpy_dtype(self) -> np.dtype[np.generic]:
        return np.dtype(self.dtype)

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None

    @property
    def caller_dtype(self) -> str:
        """The dtype callers pass and receive: float32 for float and quantized tensors, else its own."""
        if self.quantization is not None or self.numpy_dtype.kind == "f":
            return "float32"
        return self.dtype

    def describe(self) -> str:
        quant = ""
        if self.quantization is not None:
            quant = (
                f" quantized(scale={self.quantization.scale:.6g}, zero_point={self.quantization.zero_point})"
            )
        return f"{self.name}: {format_shape(self.shape)} {self.dtype}{quant}"


class ModelInfo(BaseModel):
    """Everything ``edgefleet model inspect`` shows about a loaded model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    format: ModelFormat
    backend: str
    runtime: str = Field(description='inference library in use, e.g. "ai-edge-litert 2.3.0"')
    sha256: str
    size_bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    providers: list[str] = Field(default_factory=list)
    threads: int | None = None


def format_shape(shape: tuple[int | None, ...]) -> str:
    """``(None, 8, 3)`` -> ``[?, 8, 3]``; the notation every runtime message uses."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
