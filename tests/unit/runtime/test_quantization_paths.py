"""The quantizer's fast form and the per-channel input normalization, against plain numpy.

* ``Quantizer.quantize_finite`` must give exactly ``Quantizer.__call__``'s codes for every finite
  input (in range, where it skips the clip, and out of range, where it clips) and None as soon as
  one value is NaN or infinite;
* a quantizer with a folded :class:`Normalization` must match normalizing first and quantizing the
  result (the unfused form) to within one code, and exactly away from rounding ties;
* :class:`Normalizer` must be bitwise ``(x - mean) / std``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgefleet.runtime.quantization import Normalization, Normalizer, Quantizer
from edgefleet.runtime.tensors import QuantParams

pytestmark = pytest.mark.unit

INT8 = np.dtype(np.int8)
UINT8 = np.dtype(np.uint8)

finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
params_st = st.builds(
    QuantParams,
    scale=st.floats(1e-4, 10.0, allow_nan=False),
    zero_point=st.integers(-20, 20),
)


def unfused(
    x: np.ndarray, norm: Normalization, params: QuantParams, dtype: np.dtype[np.generic]
) -> np.ndarray:
    return np.asarray(Quantizer(params, dtype)((x - norm.mean) / norm.std)).copy()


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 5)), elements=finite32),
    params_st,
    st.sampled_from([INT8, UINT8]),
)
def test_quantize_finite_equals_the_clipping_call(
    x: np.ndarray, params: QuantParams, dtype: np.dtype[np.generic]
) -> None:
    quantizer = Quantizer(params, dtype)
    expected = quantizer(x).copy()
    got = quantizer.quantize_finite(x)
    assert got is not None
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.float32, st.integers(1, 30), elements=st.floats(-5, 5, width=32)),
    st.integers(0, 29),
    st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_quantize_finite_refuses_any_nan_or_inf(x: np.ndarray, at: int, bad: float) -> None:
    x[at % len(x)] = bad
    quantizer = Quantizer(QuantParams(scale=0.05, zero_point=3), INT8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the check either
        assert quantizer.quantize_finite(x) is None


@st.composite
def normalized_cases(draw: st.DrawFn) -> tuple[np.ndarray, Normalization, QuantParams, np.dtype[np.generic]]:
    channels = draw(st.integers(1, 6))
    rows = draw(st.integers(1, 40))
    scale_of_data = draw(st.sampled_from([1.0, 128.0, 2.0**20, 2.0**100]))
    x = draw(
        arrays(
            np.float32,
            (rows, channels),
            elements=st.floats(-scale_of_data, scale_of_data, width=32),
        )
    )
    mean = draw(arrays(np.float64, channels, elements=st.floats(-50, 50)))
    std = draw(arrays(np.float64, channels, elements=st.floats(0.01, 100)))
    norm = Normalization.of(mean, std, channels)
    params = QuantParams(scale=draw(st.floats(0.005, 0.5)), zero_point=draw(st.integers(-10, 10)))
    return x, norm, params, draw(st.sampled_from([INT8, UINT8]))


@settings(max_examples=300, deadline=None)
@given(normalized_cases())
def test_folded_normalization_matches_normalize_then_quantize(
    case: tuple[np.ndarray, Normalization, QuantParams, np.dtype[np.generic]],
) -> None:
    x, norm, params, dtype = case
    quantizer = Quantizer(params, dtype, norm)
    expected = unfused(x, norm, params, dtype).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # huge inputs must be clipped before they can overflow
        checked = quantizer.quantize_finite(x)
        assert checked is not None
        checked = checked.copy()
        plain = quantizer(x).copy()
    assert checked.dtype == plain.dtype == dtype
    np.testing.assert_array_equal(checked, plain)
    assert np.abs(plain.astype(np.int64) - expected).max() <= 1
    # a difference is only possible next to a rounding tie of the unfused form
    y = ((x.astype(np.float64) - norm.mean) / norm.std) / params.scale
    frac = np.abs(y - np.floor(y) - 0.5)
    off = plain.astype(np.int64) != expected
    assert np.all(frac[off] < 1e-3)


def test_folded_normalization_on_typical_data_is_exact_almost_everywhere() -> None:
    rng = np.random.default_rng(3)
    mean = np.array([0.5, -2.0, 10.0])
    std = np.array([0.2, 3.0, 7.5])
    x = (rng.standard_normal((1000, 3)) * std + mean).astype(np.float32)
    norm = Normalization.of(mean, std, 3)
    params = QuantParams(scale=0.03, zero_point=-4)
    got = Quantizer(params, INT8, norm).quantize_finite(x)
    assert got is not None
    expected = unfused(x, norm, params, INT8)
    assert np.count_nonzero(got != expected) <= 5  # out of 3000: only values at a rounding tie


def test_folded_normalization_saturates_out_of_range_values() -> None:
    norm = Normalization.of([1.0, -1.0], [2.0, 0.5], 2)
    quantizer = Quantizer(QuantParams(scale=0.1, zero_point=0), INT8, norm)
    x = np.array([[3e38, -3e38], [-3e38, 3e38], [1.0, -1.0]], np.float32)
    got = quantizer.quantize_finite(x)
    assert got is not None
    assert got.tolist() == [[127, -128], [-128, 127], [0, 0]]


def test_normalizer_is_bitwise_the_numpy_expression() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 50, 6)).astype(np.float32) * 5
    norm = Normalization.of(rng.standard_normal(6), rng.uniform(0.1, 3, 6), 6)
    got = Normalizer(norm)(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (x - norm.mean) / norm.std)


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        ([0.0, 0.0], [1.0, 1.0, 1.0], r"mean must have shape \(3,\)"),
        ([0.0, 0.0, 0.0], [[1.0, 1.0, 1.0]], r"std must have shape \(3,\)"),
        ([0.0, 0.0, 0.0], [1.0, 0.0, 1.0], "std must be > 0"),
        ([0.0, 0.0, 0.0], [1.0, -2.0, 1.0], "std must be > 0"),
        ([0.0, np.nan, 0.0], [1.0, 1.0, 1.0], "mean must be finite"),
        ([0.0, 0.0, 0.0], [1.0, np.inf, 1.0], "std must be finite"),
        (["a", "b", "c"], [1.0, 1.0, 1.0], "mean must be 3 numbers"),
    ],
)
def test_normalization_rejects_bad_constants(mean: object, std: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Normalization.of(mean, std, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("clip", [False, True])
def test_folded_normalization_of_windows_equals_that_of_their_rows(clip: bool) -> None:
    # (N, L, C) windows take the tiled-row path; (N * L, C) rows the per-channel broadcast one
    rng = np.random.default_rng(7)
    mean = np.array([0.5, -2.0, 10.0, 3.0])
    std = np.array([0.2, 3.0, 7.5, 1.0])
    windows = (rng.standard_normal((16, 50, 4)) * std * (40 if clip else 1) + mean).astype(np.float32)
    norm = Normalization.of(mean, std, 4)
    params = QuantParams(scale=0.03, zero_point=-4)
    quantizer = Quantizer(params, INT8, norm)
    got = quantizer.quantize_finite(windows)
    assert got is not None
    got = got.copy()
    rows = Quantizer(params, INT8, norm).quantize_finite(windows.reshape(-1, 4))
    assert rows is not None
    np.testing.assert_array_equal(got.reshape(-1, 4), rows)
    np.testing.assert_array_equal(quantizer(windows), got)  # the clipping call agrees too
    assert got.shape == windows.shape


def test_normalizer_stays_bitwise_across_shapes_and_strided_input() -> None:
    """The tiled-row form must equal the broadcast expression whatever the shape, call after call."""
    rng = np.random.default_rng(5)
    norm = Normalization.of(rng.standard_normal(6), rng.uniform(0.1, 3, 6), 6)
    normalizer = Normalizer(norm)
    big = rng.standard_normal((16, 50, 6)).astype(np.float32)
    for x in (big, big[:1], big[::3], big[:, ::2], big[0], big[:4], big.reshape(16, 25, 12)[:, :, :6]):
        got = normalizer(x)
        assert got.shape == x.shape
        np.testing.assert_array_equal(got, (x - norm.mean) / norm.std)
