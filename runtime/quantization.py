"""Affine (scale / zero point) quantization between float32 callers and integer tensors.

``real = scale * (q - zero_point)``. Both directions sit on the predict hot path, so the
constants are prepared once per tensor (:class:`Quantizer`, :class:`Dequantizer`), numpy's slow
convenience wrappers (``np.clip``, ``np.iinfo``) are avoided, and 8-bit tensors are dequantized
with a 256-entry lookup table: one gather instead of three passes.

:meth:`Quantizer.quantize_finite` is the predict fast path's form: two read-only reductions (the
input's min and max) both prove every value finite (the NaN/inf check) and, when the values are
in range, let it skip the clip pass. A quantizer can also fold a per-channel input normalization
``(x - mean) / std`` into its constants (:class:`Normalization`), so normalize + quantize is one
set of passes; :class:`Normalizer` is the float-tensor form (one scratch buffer, two passes).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.runtime.tensors import QuantParams, TensorSpec
from edgefleet.types import AnyArray

__all__ = [
    "Dequantizer",
    "InputPlan",
    "Normalization",
    "Normalizer",
    "Quantizer",
    "dequantize",
    "input_plan",
    "output_converter",
    "quantize",
]

# The ufunc behind np.clip, minus np.clip's argument-checking wrapper, which costs more than the
# work on small arrays (figures: docs/runtime.md, "Hot-path notes").
_clip: Callable[..., Any] = getattr(getattr(np, "_core", getattr(np, "core", np)).umath, "clip", np.clip)
_min = np.minimum.reduce  # the ufunc methods: np.min / np.max's wrappers cost more than the work
_max = np.maximum.reduce
_copyto = np.copyto
_INF = math.inf


@dataclass(frozen=True, eq=False)
class Normalization:
    """Per-channel ``(x - mean) / std`` over the last axis; ``mean`` and ``std`` float32 ``(channels,)``.

    Build it with :meth:`of`, which checks the values (``std`` finite and > 0, ``mean`` finite).
    """

    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]

    @classmethod
    def of(cls, mean: npt.ArrayLike, std: npt.ArrayLike, channels: int) -> Normalization:
        """Checked constants for ``channels`` channels; raises ValueError naming the bad argument."""
        arrays = []
        for label, value in (("mean", mean), ("std", std)):
            try:
                arr = np.array(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{label} must be {channels} numbers, got {value!r}") from None
            if arr.shape != (channels,):
                raise ValueError(
                    f"{label} must have shape ({channels},), one value per channel; got shape {arr.shape}"
                )
            if not np.isfinite(arr).all():
                raise ValueError(f"{label} must be finite, got {arr.tolist()}")
            arrays.append(arr)
        if not (arrays[1] > 0).all():
            raise ValueError(f"std must be > 0 for every channel, got {arrays[1].tolist()}")
        return cls(arrays[0].astype(np.float32), arrays[1].astype(np.float32))


class Normalizer:
    """float -> float ``(x - mean) / std`` per channel, into a scratch buffer reused per shape.

    The same arithmetic as the plain numpy expression (a subtract, then a divide, in float32), so
    its result is bitwise the same. Call from one thread at a time; the runtime copies the result.
    """

    __slots__ = ("_mean", "_out", "_row_constants", "_std", "normalization")

    def __init__(self, normalization: Normalization) -> None:
        self.normalization = normalization
        self._mean = normalization.mean
        self._std = normalization.std
        self._out = np.empty((0,), np.float32)
        self._row_constants: tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32]] = (
            0,
            self._mean,
            self._std,
        )

    def __call__(self, values: AnyArray) -> npt.NDArray[np.float32]:
        if values.shape != self._out.shape:
            self._out = np.empty(values.shape, np.float32)
        out = self._out
        mean, std = self._mean, self._std
        source: AnyArray = values
        target: AnyArray = out
        if values.ndim >= 2 and values.shape[0]:
            # as Quantizer._folded: (channels,) constants broadcast over the last axis run numpy's
            # inner loop ``channels`` elements at a time; (N, row) views with the constants tiled
            # along the row do the same elementwise arithmetic (bitwise the same) in long loops
            n = values.shape[0]
            row = values.size // n
            length, mean, std = self._row_constants
            if length != row:
                reps = row // self._mean.shape[0]
                mean, std = np.tile(self._mean, reps), np.tile(self._std, reps)
                self._row_constants = (row, mean, std)
            source, target = values.reshape(n, row), out.reshape(n, row)
        np.subtract(source, mean, out=target)
        np.divide(target, std, out=target)
        return out


class Quantizer:
    """float -> integer tensor: ``round(x / scale) + zero_point`` clipped to the dtype's range.

    Rounds half to even. The result lives in a buffer reused by the next call with the same
    shape: hand it straight to the runtime (which copies it), and call from one thread at a time.

    With a :class:`Normalization` the input is ``(x - mean) / std`` per channel, folded into the
    constants: ``round(x * a + b)`` with ``a = 1 / (std * scale)`` and ``b = zero_point - mean * a``.
    That is one rounding step away from normalizing first and quantizing the result, so a value
    within float32 rounding of a half-way point may land one code off the unfused result.
    """

    __slots__ = (
        "_a",
        "_b",
        "_bounds",
        "_dtype",
        "_high",
        "_low",
        "_out",
        "_qhigh",
        "_qlow",
        "_row_constants",
        "_scale",
        "_scratch",
        "_x_high",
        "_x_low",
        "_zero_point",
        "normalization",
    )

    def __init__(
        self, params: QuantParams, dtype: np.dtype[np.generic], normalization: Normalization | None = None
    ) -> None:
        info = np.iinfo(dtype)  # type: ignore[type-var]
        self._dtype = dtype
        self._scale = np.float32(params.scale)
        self._zero_point = np.float32(params.zero_point)
        # Clip in real units *before* dividing, so a huge input cannot overflow the division.
        self._low = np.float32((info.min - params.zero_point) * params.scale)
        self._high = np.float32((info.max - params.zero_point) * params.scale)
        self._scratch = np.empty((0,), np.float32)
        self._out: AnyArray = np.empty((0,), dtype)
        self.normalization = normalization
        self._row_constants: tuple[int, tuple[npt.NDArray[np.float32], ...]] = (0, ())
        self._qlow, self._qhigh = np.float32(info.min), np.float32(info.max)
        if normalization is None:
            self._a = self._b = self._x_low = self._x_high = np.empty((0,), np.float32)
            self._bounds = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            return
        # the folded constants, computed in float64 and rounded once
        mean = normalization.mean.astype(np.float64)
        std = normalization.std.astype(np.float64)
        a = 1.0 / (std * params.scale)
        b = params.zero_point - mean * a
        self._a, self._b = a.astype(np.float32), b.astype(np.float32)
        # each channel's real-unit range that maps into the dtype's range (std > 0, so a > 0)
        self._x_low = (mean + std * ((info.min - params.zero_point) * params.scale)).astype(np.float32)
        self._x_high = (mean + std * ((info.max - params.zero_point) * params.scale)).astype(np.float32)
        # (min a, max a, min b, max b, code range): bound x * a + b over all channels from x's own
        # min and max; Python floats, so comparing a huge bound cannot overflow a float32
        self._bounds = (float(a.min()), float(a.max()), float(b.min()), float(b.max()), info.min, info.max)

    @property
    def dtype(self) -> np.dtype[np.generic]:
        """The integer dtype of the codes."""
        return self._dtype

    def copy(self) -> Quantizer:
        """The same quantizer with scratch buffers of its own (for use in another thread)."""
        twin = copy.copy(self)
        twin._scratch = np.empty((0,), np.float32)
        twin._out = np.empty((0,), self._dtype)
        return twin

    def _buffers(self, values: AnyArray) -> tuple[npt.NDArray[np.float32], AnyArray]:
        if values.shape != self._scratch.shape:
            self._scratch = np.empty(values.shape, np.float32)
            self._out = np.empty(values.shape, self._dtype)
        return self._scratch, self._out

    def __call__(self, values: AnyArray) -> AnyArray:
        """Quantize finite ``values`` (NaN must be handled first: it has no integer code)."""
        scaled, out = self._buffers(values)
        if self.normalization is not None:
            return self._folded(values, scaled, out, clip=True)
        _clip(values, self._low, self._high, out=scaled)
        return self._finish(scaled, scaled, out)

    def quantize_finite(self, values: AnyArray) -> AnyArray | None:
        """:meth:`__call__`'s result when every value is finite; None (nothing done) when any is NaN/inf.

        The input's min and max decide both: NaN makes them NaN, inf makes one infinite; and when
        they lie in the representable range the clip pass is skipped (it would change nothing).
        ``values`` must be non-empty.
        """
        lo = _min(values, axis=None)
        hi = _max(values, axis=None)
        if not (lo > -_INF and hi < _INF):  # also false for NaN
            return None
        scaled, out = self._buffers(values)
        return self._checked(values, lo, hi, scaled, out)

    def quantize_finite_into(self, values: AnyArray, out: AnyArray) -> bool:
        """:meth:`quantize_finite` written into ``out`` (the codes' dtype, ``values``' shape, e.g. a
        slice of a ring of codes); False, with nothing written, when a value is NaN/inf.

        Its float scratch only grows, so callers whose shapes vary (blocks of samples) do not
        allocate on every call.
        """
        lo = _min(values, axis=None)
        hi = _max(values, axis=None)
        if not (lo > -_INF and hi < _INF):
            return False
        if self._scratch.size < values.size:
            self._scratch = np.empty(values.size, np.float32)
        scaled = self._scratch.reshape(-1)[: values.size].reshape(values.shape)
        self._checked(values, lo, hi, scaled, out)
        return True

    def _checked(
        self, values: AnyArray, lo: Any, hi: Any, scaled: npt.NDArray[np.float32], out: AnyArray
    ) -> AnyArray:
        """Quantize finite ``values`` whose min and max are ``lo`` and ``hi``, clipping only if needed."""
        if self.normalization is not None:
            a_min, a_max, b_min, b_max, q_low, q_high = self._bounds
            # every x * a + b lies in [y_lo, y_hi] (a > 0); inside the dtype's range, no clip is needed
            y_lo = (a_min if lo >= 0 else a_max) * float(lo) + b_min
            y_hi = (a_max if hi >= 0 else a_min) * float(hi) + b_max
            return self._folded(values, scaled, out, clip=not (q_low <= y_lo and y_hi <= q_high))
        if self._low <= lo and hi <= self._high:
            return self._finish(values, scaled, out)
        _clip(values, self._low, self._high, out=scaled)
        return self._finish(scaled, scaled, out)

    def _finish(self, clipped: AnyArray, scaled: npt.NDArray[np.float32], out: AnyArray) -> AnyArray:
        np.divide(clipped, self._scale, out=scaled)
        np.rint(scaled, out=scaled)  # within 0.5 of an in-range integer, so rounding lands in range
        np.add(scaled, self._zero_point, out=scaled)
        # exact integers in the dtype's range: a plain cast (cheaper than a casting add into the output)
        _copyto(out, scaled, casting="unsafe")
        return out

    def _per_row(self, row: int) -> tuple[npt.NDArray[np.float32], ...]:
        """``(a, b, x_low, x_high)`` tiled along a flattened ``row``-long window, cached."""
        length, constants = self._row_constants
        if length == row:
            return constants
        if length > row:
            # the tiles repeat every ``channels`` values, so a longer tiling's head is this one
            # (an encoder's blocks vary in length: no re-tiling for each shorter one)
            return tuple(c[:row] for c in constants)
        reps = row // self._a.shape[0]
        constants = tuple(np.tile(c, reps) for c in (self._a, self._b, self._x_low, self._x_high))
        self._row_constants = (row, constants)
        return constants

    def _folded(
        self, values: AnyArray, scaled: npt.NDArray[np.float32], out: AnyArray, *, clip: bool
    ) -> AnyArray:
        a, b, x_low, x_high = self._a, self._b, self._x_low, self._x_high
        result = out
        if values.ndim >= 2 and values.shape[0]:
            # (channels,) constants broadcast over the last axis run numpy's inner loop only
            # ``channels`` elements at a time, far slower than over one flattened window:
            # work on (N, row) views with the constants tiled along the row
            n = values.shape[0]
            row = values.size // n
            a, b, x_low, x_high = self._per_row(row)
            values, scaled, out = values.reshape(n, row), scaled.reshape(n, row), out.reshape(n, row)
        if clip:
            # per channel, in real units first so a huge input cannot overflow x * a, then in
            # code units, since float32 rounding may carry a clipped value just past the range
            # with array bounds the clip ufunc is slower than maximum + minimum (it is the
            # faster one with scalar bounds, below); the same result for finite input
            np.maximum(values, x_low, out=scaled)
            np.minimum(scaled, x_high, out=scaled)
            np.multiply(scaled, a, out=scaled)
            np.add(scaled, b, out=scaled)
            _clip(scaled, self._qlow, self._qhigh, out=scaled)
        else:
            np.multiply(values, a, out=scaled)
            np.add(scaled, b, out=scaled)
        np.rint(scaled, out=scaled)
        _copyto(out, scaled, casting="unsafe")
        return result


class Dequantizer:
    """integer tensor -> float32: ``scale * (q - zero_point)``."""

    __slots__ = ("_scale", "_table", "_zero_point")

    def __init__(self, params: QuantParams, dtype: np.dtype[np.generic]) -> None:
        self._scale = np.float32(params.scale)
        self._zero_point = np.float32(params.zero_point)
        self._table: npt.NDArray[np.float32] | None = None
        if dtype.itemsize == 1 and dtype.kind in "iu":
            # Real value of every 8-bit code, indexed by the code's unsigned bit pattern.
            codes = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32)
            self._table = (codes - self._zero_point) * self._scale

    def __call__(self, values: AnyArray) -> npt.NDArray[np.float32]:
        if self._table is not None and values.dtype.itemsize == 1:
            return self._table.take(values.view(np.uint8))  # the method skips np.take's wrapper
        out = values.astype(np.float32)
        out -= self._zero_point
        out *= self._scale
        return out


def quantize(values: AnyArray, params: QuantParams, dtype: np.dtype[np.generic]) -> AnyArray:
    """One-off :class:`Quantizer` (a fresh array); build the class once for repeated calls."""
    return Quantizer(params, dtype)(values)


def dequantize(values: AnyArray, params: QuantParams) -> npt.NDArray[np.float32]:
    """One-off :class:`Dequantizer`; build the class once for repeated calls."""
    return Dequantizer(params, values.dtype)(values)


# -- how Model converts each tensor, decided once at load time -------------------------------


@dataclass(frozen=True)
class InputPlan:
    """How one caller array becomes one tensor, decided once at load time (predict is the hot path)."""

    spec: TensorSpec
    caller_dtype: np.dtype[np.generic]
    tensor_dtype: np.dtype[np.generic]
    batched: bool
    is_float: bool
    rank: int
    fixed_dims: tuple[tuple[int, int], ...]
    """(axis, size) pairs that must match exactly: every fixed dimension except the batch one."""
    quantizer: Quantizer | None
    tail: tuple[int, ...] | None
    """Every dimension after the batch one, when all are fixed: one tuple compare checks the shape."""
    normalizer: Normalizer | None = None
    """A float tensor's per-channel input normalization (a quantized one folds it into ``quantizer``)."""


def input_plan(spec: TensorSpec) -> InputPlan:
    batched = bool(spec.shape) and spec.shape[0] in (None, 1)
    caller_dtype = np.dtype(spec.caller_dtype)
    return InputPlan(
        spec=spec,
        caller_dtype=caller_dtype,
        tensor_dtype=spec.numpy_dtype,
        batched=batched,
        is_float=caller_dtype.kind == "f",
        rank=len(spec.shape),
        fixed_dims=tuple(
            (axis, size)
            for axis, size in enumerate(spec.shape)
            if size is not None and not (axis == 0 and batched)
        ),
        quantizer=None if spec.quantization is None else Quantizer(spec.quantization, spec.numpy_dtype),
        tail=tuple(d for d in spec.shape[1:] if d is not None)
        if batched and None not in spec.shape[1:]
        else None,
    )


def output_converter(spec: TensorSpec) -> Callable[[AnyArray], AnyArray]:
    """Tensor -> caller space: dequantize, widen/narrow floats to float32, pass the rest."""
    if spec.quantization is not None:
        return Dequantizer(spec.quantization, spec.numpy_dtype)
    if spec.numpy_dtype.kind == "f" and spec.numpy_dtype != np.float32:
        return lambda arr: arr.astype(np.float32)
    return _unchanged


def _unchanged(arr: AnyArray) -> AnyArray:
    return arr
