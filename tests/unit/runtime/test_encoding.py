"""Ingest encoding: codes cut from a ring equal the model's own quantization of the windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from edgefleet.runtime.batcher import Batcher
from edgefleet.runtime.encoding import InputEncoder
from edgefleet.runtime.quantization import Normalization, Quantizer
from edgefleet.runtime.ringbuffer import StreamBuffer
from edgefleet.runtime.tensors import QuantParams
from edgefleet.types import BackpressurePolicy

pytestmark = pytest.mark.unit

PARAMS = QuantParams(scale=0.05, zero_point=-3)
INT8 = np.dtype(np.int8)


def quantizer(channels: int, normalized: bool) -> Quantizer:
    if not normalized:
        return Quantizer(PARAMS, INT8)
    mean = np.linspace(-1.0, 2.0, channels)
    std = np.linspace(0.5, 3.0, channels)
    return Quantizer(PARAMS, INT8, Normalization.of(mean, std, channels))


def encoded_buffer(
    channels: int,
    length: int,
    hop: int,
    capacity: int,
    *,
    normalized: bool = True,
    policy: BackpressurePolicy = "drop_oldest",
    name: str = "s",
) -> tuple[StreamBuffer, Quantizer]:
    source = quantizer(channels, normalized)
    buf = StreamBuffer(
        name, channels, capacity, window_length=length, hop=hop, policy=policy, block_timeout=0.0
    )
    buf.attach_encoder(InputEncoder(source, (length, channels)))
    return buf, source


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("spread", [0.5, 40.0])  # in range (no clip) and far out of it (clip path)
def test_encoding_samples_equals_quantizing_their_windows(normalized: bool, spread: float) -> None:
    rng = np.random.default_rng(3)
    source = quantizer(4, normalized)
    encoder = InputEncoder(source, (10, 4))
    samples = (rng.standard_normal((200, 4)) * spread).astype(np.float32)
    codes = encoder.encode(samples)
    assert codes is not None
    assert codes.dtype == INT8
    assert codes.shape == (200, 4)
    windows = np.stack([samples[s : s + 10] for s in range(0, 191, 3)])
    expected = source.quantize_finite(windows)
    assert expected is not None
    np.testing.assert_array_equal(np.stack([codes[s : s + 10] for s in range(0, 191, 3)]), expected)


def test_a_block_with_nan_or_inf_has_no_codes() -> None:
    encoder = InputEncoder(quantizer(2, True), (4, 2))
    for bad in (np.nan, np.inf, -np.inf):
        block = np.ones((5, 2), np.float32)
        block[3, 1] = bad
        assert encoder.encode(block) is None
    assert encoder.encode(np.ones((0, 2), np.float32)) is None


def test_blocks_of_different_lengths_reuse_one_tiling() -> None:
    source = quantizer(3, True)
    encoder = InputEncoder(source, (4, 3))
    rng = np.random.default_rng(0)
    for n in (50, 7, 50, 1, 33):  # longer, then shorter ones: their constants are the longer's head
        block = (rng.standard_normal((n, 3)) * 5).astype(np.float32)
        got = encoder.encode(block)
        expected = source.quantize_finite(block[None, :, :])
        assert got is not None
        assert expected is not None
        np.testing.assert_array_equal(got, expected[0])


def test_the_encoder_does_not_share_scratch_buffers_with_its_source() -> None:
    source = quantizer(2, False)
    encoder = InputEncoder(source, (3, 2))
    first = encoder.encode(np.ones((3, 2), np.float32))
    assert first is not None
    kept = first.copy()
    assert source.quantize_finite(np.full((3, 2), -1.0, np.float32)) is not None
    np.testing.assert_array_equal(first, kept)


def has_encoder(buf: StreamBuffer) -> bool:
    return buf.encoder is not None


def test_attach_refuses_a_second_encoder_and_a_window_shape_the_stream_does_not_cut() -> None:
    buf = StreamBuffer("imu", 2, 32, window_length=4, hop=2)
    with pytest.raises(ValueError, match=r"encoder is for windows \(5, 2\).*cuts \(4, 2\)"):
        buf.attach_encoder(InputEncoder(quantizer(2, False), (5, 2)))
    assert not has_encoder(buf)
    encoder = InputEncoder(quantizer(2, False), (4, 2))
    buf.attach_encoder(encoder)
    assert buf.encoder is encoder
    with pytest.raises(ValueError, match="already has an input encoder"):
        buf.attach_encoder(InputEncoder(quantizer(2, False), (4, 2)))


def test_samples_pushed_before_the_encoder_was_attached_get_codes_too() -> None:
    source = quantizer(2, True)
    buf = StreamBuffer("s", 2, 64, window_length=4, hop=2)
    samples = np.arange(40, dtype=np.float32).reshape(20, 2) / 7
    buf.push_block(samples, np.arange(20, dtype=np.float64))
    buf.attach_encoder(InputEncoder(source, (4, 2)))
    batch = buf.pop_batch(100)
    assert batch is not None
    assert batch.codes is not None
    np.testing.assert_array_equal(batch.codes, source.quantize_finite(batch.data))


def test_windows_near_a_nan_take_the_float_path_and_later_ones_get_codes_again() -> None:
    buf, source = encoded_buffer(1, 4, 4, 64)
    clean = np.arange(8, dtype=np.float32)[:, None]
    dirty = clean.copy()
    dirty[5, 0] = np.nan
    buf.push_block(clean, np.arange(8.0))
    first = buf.pop_batch(10)
    assert first is not None
    assert first.codes is not None
    buf.push_block(dirty, np.arange(8.0, 16.0))
    second = buf.pop_batch(10)
    assert second is not None
    assert len(second) == 2
    assert second.codes is None
    assert np.isnan(second.data).any()
    buf.push_block(clean, np.arange(16.0, 24.0))
    third = buf.pop_batch(10)
    assert third is not None
    assert third.codes is not None
    np.testing.assert_array_equal(third.codes, source.quantize_finite(third.data))


def test_batch_codes_need_every_stream_encoded() -> None:
    a, source = encoded_buffer(2, 4, 4, 64, name="a")
    b, _ = encoded_buffer(2, 4, 4, 64, name="b")
    plain = StreamBuffer("plain", 2, 64, window_length=4, hop=4)
    samples = np.ones((8, 2), np.float32)
    for buf in (a, b, plain):
        buf.push_block(samples, np.arange(8.0))
    both = Batcher([a, b], max_batch_size=4, batch_timeout=0.0).next_batch(timeout=0)
    assert both is not None
    assert len(both.parts) == 2
    assert both.codes is not None
    np.testing.assert_array_equal(both.codes, source.quantize_finite(both.data))
    a.push_block(samples, np.arange(8.0, 16.0))
    mixed = Batcher([a, plain], max_batch_size=4, batch_timeout=0.0).next_batch(timeout=0)
    assert mixed is not None
    assert len(mixed.parts) == 2
    assert mixed.codes is None


NAN_ONE_IN_4 = [False, False, False, True]
POLICIES: list[BackpressurePolicy] = ["drop_oldest", "drop_newest", "block"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, int], BackpressurePolicy, list[tuple[str, int, bool]]]:
    length = draw(st.integers(1, 8))
    shape = {
        "channels": draw(st.integers(1, 3)),
        "length": length,
        "hop": draw(st.integers(1, length)),
        "capacity": draw(st.integers(length, 5 * length + 9)),
    }
    policy = draw(st.sampled_from(POLICIES))
    op = st.one_of(
        st.tuples(
            st.just("push"),
            st.integers(0, 2 * shape["capacity"] + 3),
            st.sampled_from([False, False, False, True]),
        ),
        st.tuples(st.just("pop"), st.integers(1, 12), st.just(False)),
    )
    return shape, policy, draw(st.lists(op, min_size=1, max_size=40))


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_popped_codes_are_the_quantized_windows(
    scenario: tuple[dict[str, int], BackpressurePolicy, list[tuple[str, int, bool]]],
) -> None:
    """Whatever the pushes, drops, gaps and wrap-arounds: codes, when present, equal quantizing
    the batch's float windows, and they are absent only where a non-finite value was in reach."""
    shape, policy, ops = scenario
    buf, source = encoded_buffer(
        shape["channels"], shape["length"], shape["hop"], shape["capacity"], policy=policy
    )
    rng = np.random.default_rng(len(ops))
    clock = 0.0
    for kind, n, with_nan in ops:
        if kind == "push":
            samples = (rng.standard_normal((n, shape["channels"])) * 30).astype(np.float32)
            if with_nan and n:
                samples[rng.integers(n), rng.integers(shape["channels"])] = np.nan
            buf.push_block(samples, clock + np.arange(n, dtype=np.float64))
            clock += n
            continue
        batch = buf.pop_batch(n)
        if batch is None:
            continue
        if batch.codes is None:
            event("no codes")
            continue
        event("codes")
        assert np.isfinite(batch.data).all()
        np.testing.assert_array_equal(batch.codes, source.quantize_finite(batch.data))
