"""The packed form of a result's raw output vector (``results.outputs``, schema v2 on).

Little-endian float64: exact, 8 bytes per value, the same bytes on every machine.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

__all__ = ["decode_outputs", "encode_outputs"]


def encode_outputs(values: Sequence[float] | None) -> bytes | None:
    """Pack an output vector as little-endian float64 (exact, 8 bytes per value)."""
    if values is None:
        return None
    packed = array("d", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def decode_outputs(blob: bytes | None) -> list[float] | None:
    if blob is None:
        return None
    values = array("d")
    values.frombytes(blob)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()
