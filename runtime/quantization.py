"""Affine (scale / zero point) quantization between float32 callers and integer tensors.

``real = scale * (q - zero_point)``. Both directions sit on the predict hot path, so they
avoid numpy's slow convenience wrappers (``np.clip``, ``np.iinfo``) and, for 8-bit tensors,
dequantize with a 256-entry lookup table: one gather instead of three passes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.runtime.tensors import QuantParams
from edgefleet.types import AnyArray

__all__ = ["dequantize", "quantize"]

# The ufunc behind np.clip, minus np.clip's argument-checking wrapper (3x faster on small arrays).
_clip: Callable[..., Any] = getattr(getattr(np, "_core", getattr(np, "core", np)).umath, "clip", np.clip)


@lru_cache(maxsize=64)
def _integer_range(dtype: np.dtype[np.generic]) -> tuple[float, float]:
    info = np.iinfo(dtype)  # type: ignore[type-var]
    return float(info.min), float(info.max)


@lru_cache(maxsize=64)
def _lookup_table(scale: float, zero_point: int, dtype: np.dtype[np.generic]) -> npt.NDArray[np.float32]:
    """Real value of every 8-bit code, indexed by the code's unsigned bit pattern."""
    codes = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32)
    table = (codes - np.float32(zero_point)) * np.float32(scale)
    table.setflags(write=False)
    return table


def quantize(values: AnyArray, params: QuantParams, dtype: np.dtype[np.generic]) -> AnyArray:
    """``round(x / scale) + zero_point``, clipped to ``dtype``'s range (round half to even, like TFLite)."""
    low, high = _integer_range(dtype)
    scaled = np.divide(values, np.float32(params.scale), dtype=np.float32)
    np.rint(scaled, out=scaled)
    scaled += np.float32(params.zero_point)
    _clip(scaled, np.float32(low), np.float32(high), out=scaled)
    return scaled.astype(dtype)


def dequantize(values: AnyArray, params: QuantParams) -> npt.NDArray[np.float32]:
    """``scale * (q - zero_point)`` as float32."""
    if values.dtype.itemsize == 1 and values.dtype.kind in "iu":
        table = _lookup_table(params.scale, params.zero_point, values.dtype)
        return np.take(table, values.view(np.uint8))
    out = values.astype(np.float32)
    out -= np.float32(params.zero_point)
    out *= np.float32(params.scale)
    return out
