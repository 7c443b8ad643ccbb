"""Caller space -> tensor space, the checking half: :class:`~edgefleet.runtime.model.Model`'s inputs.

:class:`CallerInputs` is the part of ``Model`` that takes what a caller passes to ``predict``
(one array or a mapping by input name), checks names, dtypes, shapes, batch sizes and NaN/inf
against the model's input plans, and returns the arrays to convert, or raises a
ModelInputError naming the tensor, what was expected, what was got, and a hint. ``Model``
inherits it (a mixin, so the hot path pays no extra call); the attributes declared below are
set by ``Model.__init__``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.errors import ModelInputError
from edgefleet.runtime.quantization import InputPlan
from edgefleet.runtime.tensors import ModelInfo, format_shape
from edgefleet.types import AnyArray, NanPolicy

__all__ = ["CallerInputs"]

_IEEE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_all_true = np.logical_and.reduce  # the ufunc method: np.all's wrapper costs more than the work here
_dot: Callable[[AnyArray, AnyArray], Any] = np.vdot  # typed for any float array: numpy's stubs are not


class CallerInputs:
    """Checks and gathers a caller's inputs for a Model (see the module doc)."""

    info: ModelInfo
    _plans: dict[str, InputPlan]
    _caller_inputs: list[str]
    _state_map: dict[str, str]
    _nan_policy: NanPolicy
    _finite_scratch: np.ndarray[tuple[int, ...], np.dtype[np.bool_]]

    def _error(
        self, message: str, *, tensor: str | None, expected: str, got: str, hint: str
    ) -> ModelInputError:
        return ModelInputError(
            f"{Path(self.info.path).name}: {message}",
            tensor=tensor,
            expected=expected,
            got=got,
            path=self.info.path,
            hint=hint,
        )

    def _by_name(self, inputs: AnyArray | Mapping[str, AnyArray]) -> dict[str, AnyArray]:
        names = self._caller_inputs
        if type(inputs) is np.ndarray and len(names) == 1:
            return {names[0]: inputs}  # the common case, before the slower ABC check
        if not isinstance(inputs, Mapping):
            if len(names) != 1:
                raise self._error(
                    f"a bare array was given but the model has {len(names)} inputs",
                    tensor=None,
                    expected=f"a mapping with keys {names}",
                    got="one array",
                    hint="pass a dict keyed by input name",
                )
            return {names[0]: inputs}
        unknown = [k for k in inputs if k not in self._plans]
        if unknown:
            raise self._error(
                f"unknown input {unknown[0]!r}; the model's inputs are {names}",
                tensor=str(unknown[0]),
                expected=", ".join(names),
                got=", ".join(map(str, inputs)),
                hint="key inputs exactly as `edgefleet model inspect` names them",
            )
        fed_state = [k for k in inputs if k in self._state_map]
        if fed_state:
            raise self._error(
                f"input {fed_state[0]!r} is recurrent state, fed from output "
                f"{self._state_map[fed_state[0]]!r}",
                tensor=fed_state[0],
                expected=", ".join(names),
                got=", ".join(inputs),
                hint="do not pass state inputs; call reset_state() to start from zeros",
            )
        missing = [n for n in names if n not in inputs]
        if missing:
            raise self._error(
                f"missing input {missing[0]!r}",
                tensor=missing[0],
                expected=", ".join(names),
                got=", ".join(inputs) or "nothing",
                hint="pass every input listed by `edgefleet model inspect`",
            )
        return dict(inputs)

    def _prepare(self, arrays: dict[str, AnyArray]) -> tuple[dict[str, AnyArray], int]:
        feeds: dict[str, AnyArray] = {}
        batch = 0
        batched: list[str] = []
        for name, value in arrays.items():
            plan = self._plans[name]
            arr = self._converted(plan, value)
            if plan.batched:
                batch = max(batch, arr.shape[0])
                batched.append(name)
            feeds[name] = arr
        if not batched:
            return feeds, 1
        for name in batched:
            rows = feeds[name].shape[0]
            if rows == batch:
                continue
            if rows == 1:  # one row for the whole batch, like numpy broadcasting
                feeds[name] = np.ascontiguousarray(
                    np.broadcast_to(feeds[name], (batch, *feeds[name].shape[1:]))
                )
                continue
            counts = ", ".join(f"{n}={feeds[n].shape[0]}" for n in batched)
            raise self._error(
                f"input {name!r} has {rows} rows but the batch has {batch} ({counts})",
                tensor=name,
                expected=f"{batch} (or 1) rows",
                got=str(rows),
                hint="every batched input needs the same batch size",
            )
        if batch == 0:
            raise self._error(
                "empty batch",
                tensor=next(iter(feeds), None),
                expected="at least 1 sample",
                got="0",
                hint="skip predict() when there is nothing to run",
            )
        return feeds, batch

    def _converted(self, plan: InputPlan, value: AnyArray) -> AnyArray:
        spec = plan.spec
        try:
            arr = value if type(value) is np.ndarray else np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise self._error(
                f"input {spec.name!r} is not an array ({exc})",
                tensor=spec.name,
                expected=f"{format_shape(spec.shape)} {spec.caller_dtype}",
                got=type(value).__name__,
                hint="pass a numpy array",
            ) from None
        if arr.dtype != plan.caller_dtype:
            arr = self._cast(plan, arr)
        shape = arr.shape
        if plan.tail is None or len(shape) != plan.rank or shape[1:] != plan.tail:
            self._check_shape(plan, arr)
        if plan.is_float and self._nan_policy != "allow":
            arr = self._apply_nan_policy(spec.name, arr)
        return arr

    def _cast(self, plan: InputPlan, arr: AnyArray) -> AnyArray:
        target = plan.caller_dtype
        ok = np.can_cast(arr.dtype, target, "same_kind")
        if ok and not plan.is_float and not np.can_cast(arr.dtype, target, "safe") and arr.size:
            # Narrowing integers (int64 -> int32) is safe only when every value fits.
            info = np.iinfo(target)  # type: ignore[type-var]
            ok = arr.dtype.kind in "iu" and info.min <= int(arr.min()) and int(arr.max()) <= info.max
        if not ok:
            raise self._error(
                f"input {plan.spec.name!r} has dtype {arr.dtype}, which cannot be cast safely to {target}",
                tensor=plan.spec.name,
                expected=str(target),
                got=str(arr.dtype),
                hint=f"convert it yourself, e.g. x.astype(np.{target})",
            )
        return arr.astype(target)

    def _check_shape(self, plan: InputPlan, arr: AnyArray) -> None:
        shape = arr.shape
        if len(shape) == plan.rank and all(shape[axis] == size for axis, size in plan.fixed_dims):
            return
        spec = plan.spec
        expected = spec.shape
        hint = "the first dimension is the batch; other fixed dimensions must match exactly"
        if arr.ndim == len(expected) - 1 and plan.batched:
            hint = "add a batch axis, e.g. x[np.newaxis]"
        raise self._error(
            f"input {spec.name!r} has shape {format_shape(arr.shape)}, expected {format_shape(expected)}",
            tensor=spec.name,
            expected=format_shape(expected),
            got=format_shape(arr.shape),
            hint=hint,
        )

    def _looks_finite(self, arr: AnyArray) -> bool:
        """True when every value of ``arr`` is finite; False when some may not be (check exactly)."""
        if arr.dtype in _IEEE_FLOATS:
            if arr.flags.c_contiguous:
                # The sum of squares is finite iff every value is (squares are >= 0, so an inf
                # cannot cancel; NaN propagates) or it overflowed on huge finite values, which the
                # exact check tells apart. One BLAS read instead of isfinite's mask write and the
                # reduction's read; np.vdot checks no FP flags, so no np.errstate is needed.
                return math.isfinite(_dot(arr, arr))
            # isfinite into a reused mask, then one reduction: no allocation
            if self._finite_scratch.shape != arr.shape:
                self._finite_scratch = np.empty(arr.shape, np.bool_)
            mask = self._finite_scratch
            np.isfinite(arr, out=mask)
            return bool(_all_true(mask, axis=None))
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.add.reduce(arr, axis=None))
        return math.isfinite(total)

    def _apply_nan_policy(self, name: str, arr: AnyArray) -> AnyArray:
        if arr.size == 0 or self._looks_finite(arr):
            return arr
        bad = ~np.isfinite(arr)
        count = int(np.count_nonzero(bad))
        if count == 0:
            return arr
        if self._nan_policy == "zero":
            return np.where(bad, arr.dtype.type(0), arr)
        raise self._error(
            f"input {name!r} contains {count} NaN/inf value(s) out of {arr.size}",
            tensor=name,
            expected="finite values",
            got=f"{count} non-finite",
            hint="clean the data upstream, or load the model with nan_policy='zero' or 'allow'",
        )
