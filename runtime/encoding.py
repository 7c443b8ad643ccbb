"""Input encoding at ingest: each sample of a stream quantized once, not once per window.

An integer-input model (the demo's fully-int8 TFLite model) needs every window quantized, and
normalized first when the bundle says so. Done at predict time that is one pass over every
element of every window: with overlapping windows (hop 10, window 50) each sample is quantized
``window_length / hop`` times, and on the demo model that quantize costs more than the model call.

:class:`InputEncoder` does the same arithmetic once per sample into a second ring of codes kept
beside the float samples (:class:`CodeRing`): each pop first encodes the samples that arrived
since the last one, in one call, then gathers the windows' codes, and :meth:`Model.predict_encoded
<edgefleet.runtime.model.Model.predict_encoded>` hands them to the runtime. The quantization is
elementwise, so a window cut from encoded samples is bitwise the window :meth:`Model.predict
<edgefleet.runtime.model.Model.predict>` would quantize itself (the tests check it).

The float samples stay in the ring and in every batch: drift statistics, routing and cloud
fallback read them. Samples with NaN/inf have no code, so windows near them take the float path
and the model's NaN policy, exactly as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgefleet.runtime.quantization import Quantizer
from edgefleet.types import AnyArray, FloatArray

if TYPE_CHECKING:
    from edgefleet.runtime.model import Model
    from edgefleet.runtime.ringbuffer import StreamBuffer

__all__ = ["CodeRing", "InputEncoder", "encode_overlapping_windows"]


def encode_overlapping_windows(model: Model, buffer: StreamBuffer) -> InputEncoder | None:
    """Attach ``model``'s input encoder to ``buffer`` when that saves work; the encoder or None.

    Only overlapping windows (``hop < window_length``) quantize a sample more than once at predict
    time. Without overlap the element count is the same either way and encoding at the pop only
    adds a quantizer call per batch, so the float path is kept. None as well for a model that
    takes no codes (float input) or a window shape it does not take.
    """
    if buffer.hop >= buffer.window_length:
        return None
    encoder = model.input_encoder()
    if encoder is None or encoder.window_shape != (buffer.window_length, buffer.channels):
        return None
    buffer.attach_encoder(encoder)
    return encoder


class InputEncoder:
    """Quantizes ``(n, channels)`` blocks of samples exactly as a model's input quantizer would.

    Made by :meth:`Model.input_encoder <edgefleet.runtime.model.Model.input_encoder>`; one per
    stream buffer (it keeps scratch buffers, so one producer thread at a time). ``source`` is the
    model's own quantizer this one copies: the model accepts codes only from an encoder whose
    source is still its current quantizer (a new normalization makes older codes stale).
    """

    __slots__ = ("_quantizer", "dtype", "source", "window_shape")

    def __init__(self, source: Quantizer, window_shape: tuple[int, ...]) -> None:
        self.source = source
        self._quantizer = source.copy()
        self.dtype: np.dtype[np.generic] = source.dtype
        self.window_shape = window_shape
        """The model's input shape after the batch dimension: ``(window_length, channels)``."""

    @property
    def channels(self) -> int:
        return self.window_shape[-1]

    def encode(self, block: FloatArray) -> AnyArray | None:
        """``block`` ``(n, channels)`` as new codes ``(n, channels)``, or None when a value is NaN/inf."""
        codes: AnyArray = np.empty(block.shape, self.dtype)
        return codes if self.encode_into(block, codes) else None

    def encode_into(self, block: FloatArray, codes: AnyArray) -> bool:
        """Write ``block``'s codes into ``codes`` (same shape, e.g. rows of a :class:`CodeRing`);
        False, with nothing written, when a value is NaN/inf (or the block is empty)."""
        n = block.shape[0]
        if not n:
            return False
        # one long row: the quantizer's per-channel constants tile along it (see Quantizer._folded)
        flat = n * block.shape[1]
        return self._quantizer.quantize_finite_into(block.reshape(1, flat), codes.reshape(1, flat))


class CodeRing:
    """The codes of a ring buffer's samples, row for row, encoded as the consumer needs them.

    Owned by one :class:`~edgefleet.runtime.ringbuffer.StreamBuffer` and used under its lock by
    its consumer: each pop first encodes the samples published since the last one (in one
    quantizer call, so the cost per call is paid once per batch, not once per pushed block).
    ``encoded_upto`` is the accepted-sample index below which rows are encoded; rows below
    ``valid_from`` have no valid code (a NaN/inf was among the rows encoded with them).
    """

    __slots__ = ("encoded_upto", "encoder", "rows", "sliding", "valid_from")

    def __init__(self, encoder: InputEncoder, capacity: int, window_length: int) -> None:
        self.encoder = encoder
        self.rows: AnyArray = np.zeros((capacity, encoder.channels), encoder.dtype)
        # as the sample ring's: every window position that does not wrap, as one view
        self.sliding: AnyArray = np.lib.stride_tricks.sliding_window_view(
            self.rows, window_length, axis=0
        ).transpose(0, 2, 1)
        self.encoded_upto = 0
        self.valid_from = 0

    def encode(self, samples: FloatArray, low: int, high: int) -> None:
        """Encode the samples of accepted indices ``[low, high)`` from the sample ring ``samples``."""
        cap = self.rows.shape[0]
        p, q = low % cap, (high - 1) % cap + 1
        pieces = [(p, q)] if p < q else [(p, cap), (0, q)]
        for a, b in pieces:
            if not self.encoder.encode_into(samples[a:b], self.rows[a:b]):
                self.valid_from = high  # every window reaching into [low, high) takes the float path
        self.encoded_upto = high
