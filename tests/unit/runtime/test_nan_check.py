"""The NaN/inf input check (``nan_policy``) agrees with ``np.isfinite`` on every array.

The check's fast test is the sum of squares (``np.vdot``): finite iff every value is finite,
unless huge finite values overflow it, when the exact check decides. These properties pin that
down against ``np.isfinite(x).all()`` for NaN, +-inf, huge values, subnormals, both float widths,
any shape and memory layout, including arrays long enough for BLAS's unrolled kernels and tails.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from edgefleet.errors import ModelInputError
from edgefleet.runtime.model_inputs import CallerInputs
from edgefleet.runtime.tensors import ModelInfo, TensorSpec
from edgefleet.types import AnyArray, NanPolicy
from tests.support.arrays import float_output

pytestmark = pytest.mark.unit

_DTYPES: tuple[np.dtype[np.floating[Any]], ...] = (np.dtype(np.float32), np.dtype(np.float64))


def _specials(dtype: np.dtype[np.floating]) -> list[float]:
    info = np.finfo(dtype)
    return [
        math.nan,
        math.inf,
        -math.inf,
        float(info.max),
        -float(info.max),
        float(np.sqrt(info.max)) * 2,  # its square alone overflows
        float(info.smallest_subnormal),
        -float(info.smallest_subnormal),
        float(info.tiny),
        0.0,
        -0.0,
    ]


class _Checker(CallerInputs):
    def __init__(self, policy: NanPolicy) -> None:
        spec = TensorSpec(name="x", shape=(None,), dtype="float32")
        self.info = ModelInfo(
            path="/m/model.onnx",
            format="onnx",
            backend="onnxruntime",
            runtime="test",
            sha256="0" * 64,
            size_bytes=0,
            inputs=[spec],
            outputs=[spec],
        )
        self._nan_policy = policy
        self._finite_scratch = np.empty((0,), np.bool_)


def _layouts(arr: AnyArray) -> list[AnyArray]:
    """The array itself and non-contiguous views of the same values' kind."""
    views = [arr]
    if arr.ndim >= 2:
        views.append(arr.T)
    if arr.ndim >= 1 and arr.shape[0] > 1:
        views.append(arr[::2])
    return views


def _assert_agrees(arr: AnyArray) -> None:
    finite = bool(np.isfinite(arr).all())
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if finite:
        assert _Checker("reject")._apply_nan_policy("x", arr) is arr
        assert _Checker("zero")._apply_nan_policy("x", arr) is arr
        return
    with pytest.raises(
        ModelInputError, match=re.escape(f"contains {bad} NaN/inf value(s) out of {arr.size}")
    ):
        _Checker("reject")._apply_nan_policy("x", arr)
    zeroed = _Checker("zero")._apply_nan_policy("x", arr)
    assert zeroed.dtype == arr.dtype
    np.testing.assert_array_equal(zeroed, np.where(np.isfinite(arr), arr, 0))


@st.composite
def _any_floats(draw: st.DrawFn) -> AnyArray:
    dtype = draw(st.sampled_from(_DTYPES))
    elements = st.one_of(
        st.floats(width=dtype.itemsize * 8, allow_nan=True, allow_infinity=True, allow_subnormal=True),
        st.sampled_from(_specials(dtype)),
    )
    shape = draw(array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    arr: AnyArray = draw(arrays(dtype, shape, elements=elements))
    return arr


@settings(max_examples=400, deadline=None)
@given(_any_floats())
def test_check_agrees_with_isfinite_on_any_values(arr: AnyArray) -> None:
    for view in _layouts(arr):
        _assert_agrees(view)


@st.composite
def _long_mostly_finite(draw: st.DrawFn) -> AnyArray:
    """A long array of ordinary values with a few special ones at drawn positions."""
    dtype = draw(st.sampled_from(_DTYPES))
    size = draw(st.integers(1, 70_000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arr = (rng.standard_normal(size) * draw(st.sampled_from([1.0, 1e-3, 1e3]))).astype(dtype)
    for _ in range(draw(st.integers(0, 3))):
        arr[draw(st.integers(0, size - 1))] = draw(st.sampled_from(_specials(dtype)))
    rows = draw(st.sampled_from([1, 2, 3, 7]))
    if size % rows == 0:
        arr = arr.reshape(rows, -1)
    return arr


@settings(max_examples=200, deadline=None)
@given(_long_mostly_finite())
def test_check_agrees_with_isfinite_on_long_arrays(arr: AnyArray) -> None:
    for view in _layouts(arr):
        _assert_agrees(view)


@settings(max_examples=300, deadline=None)
@given(_any_floats())
def test_sum_of_squares_is_finite_only_when_every_value_is(arr: AnyArray) -> None:
    # the fast test's premise, on this numpy's BLAS; warnings are errors here, so this also
    # shows np.vdot overflowing raises no RuntimeWarning
    if math.isfinite(np.vdot(float_output(arr), float_output(arr))):
        assert np.isfinite(arr).all()


@pytest.mark.parametrize("dtype", _DTYPES)
def test_huge_finite_values_that_overflow_the_sum_pass(dtype: np.dtype[np.floating]) -> None:
    arr = np.full((4, 3), np.finfo(dtype).max, dtype)
    assert not math.isfinite(np.vdot(arr, arr))  # the exact check must decide
    _assert_agrees(arr)
    arr[2, 1] = np.nan
    _assert_agrees(arr)
