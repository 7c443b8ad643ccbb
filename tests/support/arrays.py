"""Narrow the runtime's ``AnyArray`` outputs to the float arrays that numpy's typed math accepts.

``Model.predict`` is typed ``dict[str, AnyArray]`` (any dtype), but every backend hands the caller
floats (quantized outputs are dequantized). numpy's stubs refuse ``-`` or ``assert_allclose`` on an
``NDArray[np.generic]``, so tests pass outputs through :func:`float_output`, which checks the dtype
at run time instead of casting it away.
"""

from __future__ import annotations

from typing import Any, TypeAlias, TypeGuard

import numpy as np
import numpy.typing as npt

from edgefleet.types import AnyArray

__all__ = ["FloatOutput", "float_output"]

FloatOutput: TypeAlias = npt.NDArray[np.floating[Any]]


def _is_float(array: AnyArray) -> TypeGuard[FloatOutput]:
    return bool(np.issubdtype(array.dtype, np.floating))


def float_output(array: AnyArray) -> FloatOutput:
    """``array`` itself, typed as a float array; fails the test if its dtype is not a float."""
    if not _is_float(array):
        raise AssertionError(f"expected a float model output, got dtype {array.dtype}")
    return array
