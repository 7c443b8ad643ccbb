"""Round trips and refusals of the wire codec; hypothesis fuzzing of decode_message."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.cloud_sync.codec import DEFAULT_MAX_BYTES, MAGIC, decode_message, encode_message
from edgefleet.cloud_sync.protocol import (
    Body,
    CommandBody,
    DriftBody,
    Envelope,
    EventItem,
    EventsBody,
    MetricPoint,
    ResultItem,
    ResultsBody,
    StatusBody,
    TelemetryBody,
    make_envelope,
)
from edgefleet.cloud_sync.topics import MessageKind, device_topic
from edgefleet.errors import ProtocolError

pytestmark = pytest.mark.unit

DEVICE = "dev-codec-1"


def _results(n: int) -> ResultsBody:
    return ResultsBody(
        results=[
            ResultItem(
                stream=f"imu{i % 2}",
                window_seq=i if i % 5 else None,
                window_start=1_700_000_000.0 + i * 0.25,
                window_end=1_700_000_001.0 + i * 0.25,
                model_name="har",
                model_version="1.2.0",
                label=None if i % 7 == 0 else ("walk", "run", "sit")[i % 3],
                score=None if i % 11 == 0 else 0.1 + i / 1000,
                latency_ms=1.5 + (i % 9) * 0.37,
                answered_by="cloud" if i % 4 == 0 else "edge",
                fallback_reason="low_confidence" if i % 4 == 0 else None,
                outputs=[0.1, 0.2, float(i)] if i % 3 == 0 else None,
                created_at=1_700_000_002.0 + i * 0.25,
            )
            for i in range(n)
        ]
    )


BODIES: dict[MessageKind, Body] = {
    "results": _results(50),
    "telemetry": TelemetryBody(samples=[MetricPoint(ts=1.0, name="cpu", value=0.5, labels={"core": "0"})]),
    "status": StatusBody(state="online", agent_version="0.1.0", backlog={"results": 3}, hardware={"cpu": 4}),
    "events": EventsBody(events=[EventItem(ts=2.0, kind="boot", message="started", data={"a": [1, 2]})]),
    "drift": DriftBody(window_start=1.0, window_end=2.0, psi=0.3, drifted=True),
    "cmd": CommandBody(command_id="c-1", command="report_status", args={"verbose": True}),
}


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_round_trip_every_kind(kind: MessageKind) -> None:
    env = make_envelope(DEVICE, kind, BODIES[kind], message_id=17)
    env = env.model_copy(update={"sent_at": 1_800_000_000.5})
    decoded = decode_message(device_topic(DEVICE, env.kind), encode_message(env))
    assert decoded == env
    assert decoded.dedup_key == (DEVICE, 17, 0)


def test_results_are_compact_and_lossless() -> None:
    env = make_envelope(DEVICE, "results", _results(200), message_id=5)
    wire = encode_message(env)
    assert wire[3] & 1, "a 200-result batch is compressed"
    assert len(wire) / 200 < 40
    assert decode_message(device_topic(DEVICE, "results"), wire).body == env.body


def test_small_message_is_not_compressed() -> None:
    wire = encode_message(make_envelope(DEVICE, "cmd", BODIES["cmd"], message_id=1))
    assert wire[:2] == MAGIC
    assert wire[3] == 0


def test_body_must_match_kind() -> None:
    with pytest.raises(ValueError, match="must be StatusBody"):
        Envelope(message_id=1, device_id=DEVICE, kind="status", created_at=0.0, body=BODIES["cmd"])


def _reason(topic: str, payload: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    with pytest.raises(ProtocolError) as info:
        decode_message(topic, payload, max_bytes=max_bytes)
    assert info.value.message
    return info.value.reason


def test_refusals_name_their_reason() -> None:
    topic = device_topic(DEVICE, "cmd")
    good = encode_message(make_envelope(DEVICE, "cmd", BODIES["cmd"], message_id=1))
    assert _reason(topic, b"") == "malformed"
    assert _reason(topic, b'{"command": "ping"}') == "malformed"
    assert _reason(topic, MAGIC + bytes((99, 0)) + good[4:]) == "unknown_version"
    assert _reason(topic, MAGIC + bytes((1, 0x80)) + good[4:]) == "malformed"
    assert _reason(topic, good, max_bytes=10) == "oversize"
    assert _reason("edgefleet/v1/other-device/cmd", good) == "wrong_topic"
    assert _reason("somewhere/else", good) == "wrong_topic"
    assert _reason(device_topic(DEVICE, "config"), good) == "wrong_topic"
    assert _reason(topic, MAGIC + bytes((1, 1)) + b"not zstd") == "malformed"
    wrong_schema = msgpack.packb({"i": 1, "d": DEVICE, "k": "cmd", "c": 0.0, "b": {"command": "explode"}})
    assert _reason(topic, MAGIC + bytes((1, 0)) + wrong_schema) == "malformed"


def test_zip_bomb_is_oversize() -> None:
    topic = device_topic(DEVICE, "telemetry")
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * 5_000_000)
    assert _reason(topic, MAGIC + bytes((1, 1)) + bomb, max_bytes=100_000) == "oversize"


FUZZ_KINDS: list[MessageKind] = ["results", "cmd", "status", "config"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=512), kind=st.sampled_from(FUZZ_KINDS))
def test_fuzz_random_bytes_only_raise_protocol_error(payload: bytes, kind: MessageKind) -> None:
    topic = device_topic(DEVICE, kind)
    for candidate in (payload, MAGIC + bytes((1, 0)) + payload, MAGIC + bytes((1, 1)) + payload):
        with contextlib.suppress(ProtocolError):
            decode_message(topic, candidate)


_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(body=_msgpack_values, seq=_msgpack_values, n=st.integers(-3, 5))
def test_fuzz_structured_envelopes_only_raise_protocol_error(body: object, seq: object, n: int) -> None:
    cases: list[tuple[MessageKind, object]] = [
        ("results", {"n": n, "seq": body, "out": body, "ws": body}),
        ("cmd", body),
    ]
    for kind, raw_body in cases:
        doc = {"i": seq, "d": DEVICE, "k": kind, "q": seq, "c": 1.0, "b": raw_body}
        payload = MAGIC + bytes((1, 0)) + msgpack.packb(doc, use_bin_type=True)
        with contextlib.suppress(ProtocolError):
            decode_message(device_topic(DEVICE, kind), payload)


@settings(max_examples=100, deadline=None)
@given(flip=st.integers(0, 10_000), value=st.integers(0, 255))
def test_fuzz_corrupted_real_results_only_raise_protocol_error(flip: int, value: int) -> None:
    wire = bytearray(encode_message(make_envelope(DEVICE, "results", _results(20), message_id=3)))
    wire[flip % len(wire)] = value
    with contextlib.suppress(ProtocolError):
        decode_message(device_topic(DEVICE, "results"), bytes(wire))
