"""Affine (scale / zero point) quantization between float32 callers and integer tensors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgefleet.runtime.tensors import QuantParams
from edgefleet.types import AnyArray

__all__ = ["dequantize", "quantize"]


def quantize(values: AnyArray, params: QuantParams, dtype: np.dtype[np.generic]) -> AnyArray:
    """``round(x / scale) + zero_point``, clipped to ``dtype``'s range (round half to even, like TFLite)."""
    info = np.iinfo(dtype)  # type: ignore[type-var]
    scaled = np.divide(values, params.scale, dtype=np.float32)
    np.rint(scaled, out=scaled)
    scaled += params.zero_point
    np.clip(scaled, info.min, info.max, out=scaled)
    return scaled.astype(dtype)


def dequantize(values: AnyArray, params: QuantParams) -> npt.NDArray[np.float32]:
    """``scale * (q - zero_point)`` as float32."""
    out = values.astype(np.float32)
    out -= params.zero_point
    out *= np.float32(params.scale)
    return out
