"""Type aliases shared across edgefleet's packages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float32]
AnyArray: TypeAlias = npt.NDArray[np.generic]
TensorMap: TypeAlias = Mapping[str, AnyArray]
"""Arrays keyed by tensor name, exactly as the model names them."""

Timestamp: TypeAlias = float
"""Seconds since the Unix epoch (UTC), as ``time.time()`` returns."""

AnsweredBy: TypeAlias = Literal["edge", "cloud"]
"""Which side produced a result; every stored result records it."""

BackpressurePolicy: TypeAlias = Literal["drop_oldest", "drop_newest", "block"]
NanPolicy: TypeAlias = Literal["reject", "zero", "allow"]
"""What the runtime does with NaN/inf in an input batch."""

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"
