"""Cloud inference requests and responses as pure functions: no broker, no model.

A request (``infer/request``, :class:`~edgefleet.cloud_sync.protocol.InferRequestBody`) carries one
raw window (little-endian float32, ``shape`` = ``[window_length, channels]``, before normalization:
the cloud bundle normalizes with its own statistics). :func:`parse_request` turns the MQTT message
into a :class:`Job` or raises :class:`RequestRefusedError` naming what was wrong; :func:`response_payload`
encodes the answer (or the refusal) for the device's ``infer/response`` topic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import InferRequestBody, InferResponseBody, make_envelope
from edgefleet.cloud_sync.topics import device_topic
from edgefleet.errors import ProtocolError
from edgefleet.types import FloatArray

__all__ = ["Job", "RequestRefusedError", "parse_request", "response_payload", "response_topic"]


class RequestRefusedError(Exception):
    """A request that cannot be answered. ``reason`` is a short counter key; ``device_id`` and
    ``request_id`` are set when known, so that the device can be told."""

    def __init__(
        self, message: str, *, reason: str, device_id: str | None = None, request_id: str | None = None
    ):
        super().__init__(message)
        self.reason = reason
        self.device_id = device_id
        self.request_id = request_id


@dataclass(slots=True)
class Job:
    """One request ready for the model."""

    device_id: str
    request_id: str
    window: FloatArray
    received_at: float
    correlation_data: bytes | None = None
    request: InferRequestBody | None = None
    """The request as sent (stream, window times, reason, the edge answer): a hard example's metadata."""


def parse_request(
    topic: str,
    payload: bytes,
    *,
    window_shape: tuple[int, int],
    received_at: float,
    prefix: str,
    max_bytes: int,
    correlation_data: bytes | None = None,
) -> Job:
    """Decode and check one ``infer/request`` message; raise :class:`RequestRefusedError` if unusable."""
    try:
        envelope = decode_message(topic, payload, max_bytes=max_bytes, prefix=prefix)
    except ProtocolError as exc:
        raise RequestRefusedError(str(exc), reason=exc.reason or "malformed") from None
    body = envelope.body
    if envelope.kind != "infer/request" or not isinstance(body, InferRequestBody):
        raise RequestRefusedError(
            f"{topic}: a {envelope.kind!r} message is not an inference request",
            reason="wrong_topic",
            device_id=envelope.device_id,
        )
    known = {"device_id": envelope.device_id, "request_id": body.request_id}
    shape = tuple(body.shape)
    if shape not in (window_shape, (1, *window_shape)):
        raise RequestRefusedError(
            f"request {body.request_id!r}: window shape {list(shape)} does not fit the cloud model; "
            f"expected {list(window_shape)} (window_length, channels)",
            reason="bad_shape",
            **known,
        )
    expected_bytes = int(np.prod(window_shape)) * 4
    if len(body.data) != expected_bytes:
        raise RequestRefusedError(
            f"request {body.request_id!r}: {len(body.data)} data bytes for shape {list(shape)}; "
            f"expected {expected_bytes} (float32)",
            reason="bad_data",
            **known,
        )
    window = np.frombuffer(body.data, dtype="<f4").reshape(window_shape).astype(np.float32)
    if not np.isfinite(window).all():
        raise RequestRefusedError(
            f"request {body.request_id!r}: the window holds NaN or infinite values; expected finite samples",
            reason="bad_data",
            **known,
        )
    return Job(envelope.device_id, body.request_id, window, received_at, correlation_data, body)


def response_topic(device_id: str, prefix: str) -> str:
    """The only topic a device's answers go to: ``<prefix>/<device_id>/infer/response``."""
    return device_topic(device_id, "infer/response", prefix=prefix)


def response_payload(
    device_id: str,
    request_id: str,
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    label: str | None = None,
    score: float | None = None,
    outputs: list[float] | None = None,
    error: str | None = None,
) -> bytes:
    body = InferResponseBody(
        request_id=request_id,
        model_name=model_name,
        model_version=model_version,
        label=label,
        score=score,
        outputs=outputs,
        error=error,
    )
    return encode_message(make_envelope(device_id, "infer/response", body))
