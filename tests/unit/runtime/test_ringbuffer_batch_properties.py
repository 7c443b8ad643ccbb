"""Property tests: ``pop_batch`` (batch-level) against ``pop_windows`` on a twin buffer.

``test_ringbuffer_properties.py`` checks both against the per-sample reference model; this file
drives two identical buffers through the same pushes with larger pops and more gaps, so one
``pop_batch`` often spans a gap (several segments) or the ring's wrap-around, and requires the
two consumer forms to agree on every window, every array and every counter.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from edgefleet.runtime.ringbuffer import StreamBuffer
from edgefleet.types import BackpressurePolicy


class BufferParams(TypedDict):
    """StreamBuffer's settings as one scenario draws them."""

    channels: int
    window_length: int
    hop: int
    capacity: int
    policy: BackpressurePolicy


POLICIES: list[BackpressurePolicy] = ["drop_newest", "block", "drop_oldest"]

pytestmark = pytest.mark.unit

Ops = list[tuple[str, int]]


@st.composite
def twin_scenarios(draw: st.DrawFn) -> tuple[BufferParams, Ops]:
    length = draw(st.integers(1, 6))
    params: BufferParams = {
        "channels": draw(st.integers(1, 3)),
        "window_length": length,
        "hop": draw(st.integers(1, length)),
        "capacity": draw(st.integers(length, 4 * length + 8)),
        "policy": draw(st.sampled_from(POLICIES)),
    }
    cap = params["capacity"]
    op = st.one_of(
        st.tuples(st.just("push"), st.integers(0, 2 * cap + 3)),
        st.tuples(st.just("pop"), st.integers(0, 3)),
        st.tuples(st.just("pop"), st.integers(4, 40)),
    )
    return params, draw(st.lists(op, min_size=1, max_size=30))


def make(params: BufferParams) -> StreamBuffer:
    return StreamBuffer(
        "s",
        params["channels"],
        params["capacity"],
        window_length=params["window_length"],
        hop=params["hop"],
        policy=params["policy"],
        block_timeout=0.0,
        clock=lambda: 7.0,
    )


@settings(max_examples=300, deadline=None)
@given(twin_scenarios())
def test_pop_batch_matches_pop_windows(scenario: tuple[BufferParams, Ops]) -> None:
    params, ops = scenario
    by_window, by_batch = make(params), make(params)
    channels = by_window.channels
    offered = 0
    for kind, n in ops:
        if kind == "push":
            ids = np.arange(offered, offered + n)
            offered += n
            samples = (ids[:, None] * 4 + np.arange(channels)[None, :]).astype(np.float32)
            times = 1000.0 + ids / 64
            assert by_window.push_block(samples, times) == by_batch.push_block(samples, times)
            continue
        windows = by_window.pop_windows(n)
        batch = by_batch.pop_batch(n)
        if not windows:
            assert batch is None
            continue
        assert batch is not None
        event(f"segments: {min(len(batch.segments), 3)}")
        first = batch.segments[0][0] % by_batch.capacity
        if first + (len(batch) - 1) * by_batch.hop + by_batch.window_length > by_batch.capacity:
            event("wraps around the ring")
        assert len(batch) == len(windows)
        np.testing.assert_array_equal(batch.data, np.stack([w.data for w in windows]))
        np.testing.assert_array_equal(batch.seq, [w.seq for w in windows])
        np.testing.assert_array_equal(batch.start_index, [w.start_index for w in windows])
        np.testing.assert_array_equal(batch.start_ts, [w.start_ts for w in windows])
        np.testing.assert_array_equal(batch.end_ts, [w.end_ts for w in windows])
        np.testing.assert_array_equal(batch.ready_at, [w.ready_at for w in windows])
        np.testing.assert_array_equal(batch.gap_before, [w.gap_before for w in windows])
        lazy = batch.windows
        assert lazy is batch.windows  # built once
        for a, b in zip(lazy, windows, strict=True):
            assert (a.stream, a.seq, a.start_ts, a.end_ts, a.ready_at, a.start_index, a.gap_before) == (
                b.stream,
                b.seq,
                b.start_ts,
                b.end_ts,
                b.ready_at,
                b.start_index,
                b.gap_before,
            )
            assert a.data.flags.c_contiguous
            np.testing.assert_array_equal(a.data, b.data)
        assert by_window.stats == by_batch.stats
    assert by_window.stats == by_batch.stats


def test_pop_batch_spans_a_gap_in_one_call() -> None:
    """drop_newest: windows before a refusal and after it come back in one batch, two segments."""
    buf = StreamBuffer("s", 1, 6, window_length=2, hop=2, policy="drop_newest")
    ids = np.arange(8, dtype=np.float32)
    assert buf.push_block(ids[:, None], ids.astype(np.float64)) == 6  # 6 and 7 refused: a gap at 6
    first = buf.pop_batch(1)
    assert first is not None
    assert first.start_index.tolist() == [0]
    more = np.arange(8, 12, dtype=np.float32)
    assert buf.push_block(more[:, None], more.astype(np.float64)) == 2  # room for two more
    batch = buf.pop_batch(10)
    assert batch is not None
    assert [(s, n, gap) for s, n, gap in batch.segments] == [(2, 2, False), (6, 1, True)]
    assert batch.data[:, :, 0].tolist() == [[2.0, 3.0], [4.0, 5.0], [8.0, 9.0]]
    assert batch.gap_before.tolist() == [False, False, True]
    assert [w.gap_before for w in batch.windows] == [False, False, True]
    assert batch.seq.tolist() == [1, 2, 3]
    assert buf.pop_batch(0) is None
    assert buf.pop_batch(5) is None
