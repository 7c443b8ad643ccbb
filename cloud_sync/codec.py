"""Bytes on the wire for :class:`~edgefleet.cloud_sync.protocol.Envelope` (see docs/protocol.md).

Frame: ``b"EF"`` magic, one byte schema version, one byte flags (bit 0: zstd), then a msgpack
map with short keys. The version sits outside the msgpack body so that a receiver can refuse a
newer schema before parsing anything. Results bodies are columnar: strings dictionary-encoded,
float columns as little-endian float64 whose bit patterns are delta-coded (lossless, and
regular timestamps turn into runs zstd squeezes well).

:func:`decode_message` raises :class:`~edgefleet.errors.ProtocolError` and nothing else, whatever
the bytes (reason ``malformed``, ``oversize``, ``unknown_version`` or ``wrong_topic``).
"""

from __future__ import annotations

import io
import operator
import threading
from typing import Any

import msgpack
import numpy as np
import zstandard
from pydantic import TypeAdapter, ValidationError

from edgefleet.cloud_sync.protocol import (
    BODY_TYPES,
    SUPPORTED_SCHEMA_VERSIONS,
    Body,
    Envelope,
    ResultItem,
    ResultsBody,
)
from edgefleet.cloud_sync.topics import DEFAULT_PREFIX, parse_topic
from edgefleet.errors import ProtocolError

__all__ = [
    "COMPRESS_THRESHOLD",
    "DEFAULT_MAX_BYTES",
    "MAGIC",
    "decode_message",
    "encode_message",
]

MAGIC = b"EF"
HEADER_LEN = 4
FLAG_ZSTD = 0x01
DEFAULT_MAX_BYTES = 256 * 1024
COMPRESS_THRESHOLD = 192
"""msgpack bodies at least this long are zstd-compressed; smaller ones would only grow."""
_EXPANSION_LIMIT = 16
"""A compressed payload may expand to at most this many times ``max_bytes`` (zip-bomb guard)."""
_ZSTD_LEVEL = 3

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstandard contexts are not thread-safe; one per thread, reused (creating one costs ~µs).
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        _local.cctx = cctx
    return cctx


def _decompressor() -> zstandard.ZstdDecompressor:
    # Same reuse as the compressor: the controller decodes every message on one ingest thread.
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = zstandard.ZstdDecompressor()
        _local.dctx = dctx
    return dctx


# ------------------------------------------------------------------ columns


def _f64_encode(values: list[Any]) -> bytes:
    bits = np.asarray(values, dtype="<f8").view("<i8")
    deltas = bits.copy()
    deltas[1:] -= bits[:-1]  # wraps on overflow, and the decoder's cumsum wraps back: lossless
    return deltas.tobytes()


def _f64_decode(raw: object, count: int, column: str) -> list[float]:
    if not isinstance(raw, bytes) or len(raw) != 8 * count:
        raise ValueError(f"column {column!r} must be {8 * count} bytes of float64 deltas")
    deltas = np.frombuffer(raw, dtype="<i8")
    with np.errstate(over="ignore"):
        bits = np.cumsum(deltas, dtype="<i8")
    return [float(x) for x in bits.view("<f8")]


def _nullable_f64_encode(values: list[float | None]) -> dict[str, Any]:
    nulls = [i for i, v in enumerate(values) if v is None]
    if not nulls:
        return {"x": _f64_encode(values), "z": nulls}
    return {"x": _f64_encode([0.0 if v is None else v for v in values]), "z": nulls}


def _nullable_f64_decode(raw: object, count: int, column: str) -> list[float | None]:
    if not isinstance(raw, dict):
        raise ValueError(f"column {column!r} must be a map")
    out: list[float | None] = list(_f64_decode(raw.get("x"), count, column))
    nulls = raw.get("z", [])
    if not isinstance(nulls, list):
        raise ValueError(f"column {column!r} null list must be a list")
    for i in nulls:
        if not isinstance(i, int) or not 0 <= i < count:
            raise ValueError(f"column {column!r} null index {i!r} out of range")
        out[i] = None
    return out


def _dict_encode(
    values: list[Any], column: str, *, nullable: bool = False, allowed: frozenset[str] | None = None
) -> dict[str, Any]:
    uniques = list(dict.fromkeys(values))
    # Type checks run on the distinct values only: a handful per batch, whatever its length.
    for value in uniques:
        if value is None and nullable:
            continue
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            expected = (
                f"one of {sorted(allowed)}" if allowed else "a string" + (" or null" if nullable else "")
            )
            raise ValueError(f"result column {column!r} holds {value!r}; expected {expected}")
    index = {value: i for i, value in enumerate(uniques)}
    dtype = "<u2" if len(uniques) < 2**16 else "<u4"
    return {"v": uniques, "i": np.asarray([index[v] for v in values], dtype=dtype).tobytes()}


def _dict_decode(raw: object, count: int, column: str) -> list[Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("v"), list) or not isinstance(raw.get("i"), bytes):
        raise ValueError(f"column {column!r} must be a map with 'v' (values) and 'i' (indices)")
    uniques: list[Any] = raw["v"]
    idx_raw: bytes = raw["i"]
    if len(idx_raw) == 2 * count:
        indices = np.frombuffer(idx_raw, dtype="<u2")
    elif len(idx_raw) == 4 * count:
        indices = np.frombuffer(idx_raw, dtype="<u4")
    else:
        raise ValueError(f"column {column!r} index length {len(idx_raw)} does not fit {count} rows")
    if count and int(indices.max()) >= len(uniques):
        raise ValueError(f"column {column!r} index out of range")
    return [uniques[int(i)] for i in indices]


_ANSWERED_BY = frozenset({"edge", "cloud"})
_RESULT_ROWS: TypeAdapter[list[ResultItem]] = TypeAdapter(list[ResultItem])


def _outputs_encode(values: list[Any]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        array = np.asarray(value, dtype="<f8")
        if array.ndim != 1:
            raise ValueError(f"result outputs must be a flat list of numbers, got shape {array.shape}")
        out.append(array.tobytes())
    return out


# The columnar wire order is ResultItem's field order; absent optional columns take its defaults.
_RESULT_KEYS = tuple(ResultItem.model_fields)
_RESULT_DEFAULTS: dict[str, Any] = {
    name: field.default for name, field in ResultItem.model_fields.items() if not field.is_required()
}
_take_row = operator.itemgetter(*_RESULT_KEYS)


def _transpose(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Columns of ``rows`` in ``_RESULT_KEYS`` order (one C-level pass when every key is there)."""
    if not rows:
        return [[] for _ in _RESULT_KEYS]
    try:
        return [list(col) for col in zip(*map(_take_row, rows), strict=True)]
    except KeyError:
        return [
            [r.get(k, _RESULT_DEFAULTS.get(k)) if k in _RESULT_DEFAULTS else r[k] for r in rows]
            for k in _RESULT_KEYS
        ]


def _results_to_columns(body: ResultsBody) -> dict[str, Any]:
    # Rows are ResultItem models, or plain dicts with the same keys: the uplink builds bodies
    # straight from store rows without a model per row, and this function type-checks them.
    items: list[Any] = list(body.results)
    rows: list[dict[str, Any]] = [r if isinstance(r, dict) else r.__dict__ for r in items]
    (stream, seqs, ws, we, model, mver, label, score, lat, by, fb, outputs, created) = _transpose(rows)
    for seq in seqs:
        if seq is not None and type(seq) is not int:
            raise ValueError(f"result column 'window_seq' holds {seq!r}; expected an integer or null")
    return {
        "n": len(rows),
        "stream": _dict_encode(stream, "stream"),
        "seq": seqs,
        "ws": _f64_encode(ws),
        "we": _f64_encode(we),
        "model": _dict_encode(model, "model_name"),
        "mver": _dict_encode(mver, "model_version"),
        "label": _dict_encode(label, "label", nullable=True),
        "score": _nullable_f64_encode(score),
        "lat": _f64_encode(lat),
        "by": _dict_encode(by, "answered_by", allowed=_ANSWERED_BY),
        "fb": _dict_encode(fb, "fallback_reason", nullable=True),
        "out": _outputs_encode(outputs),
        "ca": _nullable_f64_encode(created),
    }


def _columns_to_results(raw: object) -> ResultsBody:
    if not isinstance(raw, dict):
        raise ValueError("results body must be a map of columns")
    count = raw.get("n")
    if not isinstance(count, int) or count < 0:
        raise ValueError("results body needs 'n', the row count")
    seqs = raw.get("seq")
    outs = raw.get("out")
    if not isinstance(seqs, list) or len(seqs) != count:
        raise ValueError("column 'seq' must list one window_seq per row")
    if not isinstance(outs, list) or len(outs) != count:
        raise ValueError("column 'out' must list one outputs entry per row")
    outputs: list[list[float] | None] = []
    for item in outs:
        if item is None:
            outputs.append(None)
        elif isinstance(item, bytes) and len(item) % 8 == 0:
            outputs.append([float(x) for x in np.frombuffer(item, dtype="<f8")])
        else:
            raise ValueError("column 'out' entries must be null or float64 bytes")
    columns = {
        "stream": _dict_decode(raw.get("stream"), count, "stream"),
        "window_seq": seqs,
        "window_start": _f64_decode(raw.get("ws"), count, "ws"),
        "window_end": _f64_decode(raw.get("we"), count, "we"),
        "model_name": _dict_decode(raw.get("model"), count, "model"),
        "model_version": _dict_decode(raw.get("mver"), count, "mver"),
        "label": _dict_decode(raw.get("label"), count, "label"),
        "score": _nullable_f64_decode(raw.get("score"), count, "score"),
        "latency_ms": _f64_decode(raw.get("lat"), count, "lat"),
        "answered_by": _dict_decode(raw.get("by"), count, "by"),
        "fallback_reason": _dict_decode(raw.get("fb"), count, "fb"),
        "outputs": outputs,
        "created_at": _nullable_f64_decode(raw.get("ca"), count, "ca"),
    }
    names = list(columns)
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    # One validator call for the whole batch: the controller decodes every result of the fleet.
    return ResultsBody.model_construct(results=_RESULT_ROWS.validate_python(rows))


# ------------------------------------------------------------------ envelope


def _body_to_wire(body: Body) -> Any:
    if isinstance(body, ResultsBody):
        return _results_to_columns(body)
    return body.model_dump(mode="python", exclude_defaults=True)


def encode_message(envelope: Envelope, *, compress: bool | None = None) -> bytes:
    """Serialize ``envelope``. ``compress=None`` compresses bodies of ``COMPRESS_THRESHOLD`` bytes or more."""
    doc = {
        "i": envelope.message_id,
        "d": envelope.device_id,
        "k": envelope.kind,
        "q": envelope.seq,
        "c": envelope.created_at,
        "b": _body_to_wire(envelope.body),
    }
    if envelope.parts != 1:
        doc["p"] = envelope.part
        doc["n"] = envelope.parts
    if envelope.sent_at is not None:
        doc["s"] = envelope.sent_at
    packed: bytes = msgpack.packb(doc, use_bin_type=True)
    flags = 0
    if compress or (compress is None and len(packed) >= COMPRESS_THRESHOLD):
        packed = _compressor().compress(packed)
        flags |= FLAG_ZSTD
    return MAGIC + bytes((envelope.schema_version, flags)) + packed


def _decompress(data: bytes, limit: int, topic: str) -> bytes:
    try:
        with _decompressor().stream_reader(io.BytesIO(data)) as reader:
            out: bytes = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise ProtocolError(
            f"message on {topic!r} has a corrupt zstd body: {exc}", topic=topic, reason="malformed"
        ) from None
    if len(out) > limit:
        raise ProtocolError(
            f"message on {topic!r} expands beyond {limit} bytes; expected a body under that limit",
            topic=topic,
            reason="oversize",
            hint="split large batches (sync.max_batch_results) or raise the receiver's limit",
        )
    return out


def decode_message(
    topic: str,
    payload: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    prefix: str = DEFAULT_PREFIX,
) -> Envelope:
    """Parse and validate one MQTT payload received on ``topic``.

    Raises :class:`ProtocolError` only: ``wrong_topic`` (topic outside the namespace, or the
    envelope names another device/kind than its topic), ``oversize`` (payload or its
    decompressed body too big), ``unknown_version`` (schema this code does not know) or
    ``malformed`` (anything else).
    """
    device_id, kind = parse_topic(topic, prefix=prefix)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"payload on {topic!r} is not bytes", topic=topic, reason="malformed")
    payload = bytes(payload)
    if len(payload) > max_bytes:
        raise ProtocolError(
            f"message on {topic!r} is {len(payload)} bytes; expected at most {max_bytes}",
            topic=topic,
            reason="oversize",
            hint="split large batches (sync.max_batch_results / max_message_bytes) on the sender",
        )
    if len(payload) < HEADER_LEN or payload[:2] != MAGIC:
        raise ProtocolError(
            f"message on {topic!r} does not start with the edgefleet frame header {MAGIC!r}",
            topic=topic,
            reason="malformed",
            hint="publish with edgefleet.cloud_sync.codec.encode_message, not raw JSON or text",
        )
    version, flags = payload[2], payload[3]
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ProtocolError(
            f"message on {topic!r} uses schema version {version}; this receiver understands "
            f"{sorted(SUPPORTED_SCHEMA_VERSIONS)}",
            topic=topic,
            reason="unknown_version",
            hint="upgrade this side of the link (agent or controller) to a release that knows it",
        )
    if flags & ~FLAG_ZSTD:
        raise ProtocolError(
            f"message on {topic!r} sets unknown frame flags {flags:#04x}", topic=topic, reason="malformed"
        )
    body_bytes = payload[HEADER_LEN:]
    if flags & FLAG_ZSTD:
        body_bytes = _decompress(body_bytes, max_bytes * _EXPANSION_LIMIT, topic)
    try:
        doc = msgpack.unpackb(body_bytes, raw=False, strict_map_key=True, use_list=True)
        if not isinstance(doc, dict):
            raise ValueError("envelope must be a msgpack map")
        if doc.get("d") != device_id or doc.get("k") != kind:
            raise ProtocolError(
                f"envelope names device {doc.get('d')!r} kind {doc.get('k')!r} but arrived on {topic!r}",
                topic=topic,
                reason="wrong_topic",
                hint="a device may only publish under its own topic prefix",
            )
        raw_body = doc.get("b")
        if kind == "results":
            body: Body = _columns_to_results(raw_body)
        else:
            body = BODY_TYPES[kind].model_validate(raw_body)
        return Envelope.model_validate(
            {
                "schema_version": version,
                "message_id": doc.get("i"),
                "device_id": device_id,
                "kind": kind,
                "seq": doc.get("q", 0),
                "part": doc.get("p", 0),
                "parts": doc.get("n", 1),
                "created_at": doc.get("c"),
                "sent_at": doc.get("s"),
                "body": body,
            }
        )
    except ProtocolError:
        raise
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ProtocolError(
            f"message on {topic!r} does not match the {kind!r} schema: {problems}",
            topic=topic,
            reason="malformed",
        ) from None
    except Exception as exc:  # msgpack/numpy raise many types on hostile bytes; all mean "malformed"
        raise ProtocolError(
            f"message on {topic!r} is malformed: {type(exc).__name__}: {exc}", topic=topic, reason="malformed"
        ) from None
