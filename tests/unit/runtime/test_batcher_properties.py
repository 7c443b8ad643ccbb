"""Property test: the Batcher (WindowBatch parts, lazy windows) against a reference on ``collate``.

The reference is the per-window algorithm spelled out on plain lists: pull windows round-robin with
``pop_windows`` (fair shares, first stream rotated per call, at most a batch pending), then apply
the pure :func:`collate`. Both run on twin buffers fed the same samples under a fake clock; every
released batch must hold the same windows in the same order, and the batch's arrays must agree
with its windows.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.runtime.batcher import Batch, Batcher, collate
from edgefleet.runtime.ringbuffer import StreamBuffer, Window

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class ReferenceBatcher:
    def __init__(self, buffers: list[StreamBuffer], max_batch_size: int, batch_timeout: float) -> None:
        self.buffers = buffers
        self.size = max_batch_size
        self.timeout = batch_timeout
        self.pending: list[Window] = []
        self.next_stream = 0

    def next_batch(self, now: float) -> list[Window]:
        room = self.size - len(self.pending)
        count = len(self.buffers)
        first = self.next_stream
        if count > 1:
            self.next_stream = (first + 1) % count
        active = [(first + k) % count for k in range(count)]
        while room > 0 and active:
            quota, extra = divmod(room, len(active))
            still = []
            for k, i in enumerate(active):
                want = quota + (1 if k < extra else 0)
                if want == 0:
                    still.append(i)
                    continue
                got = self.buffers[i].pop_windows(want)
                self.pending += got
                room -= len(got)
                if len(got) == want:
                    still.append(i)
            active = still
        batch, self.pending = collate(
            self.pending, now=now, max_batch_size=self.size, batch_timeout=self.timeout
        )
        return batch


def streams(n: int, clock: Clock, length: int, hop: int) -> list[StreamBuffer]:
    return [
        StreamBuffer(
            f"s{k}", 2, 3 * length + 10, window_length=length, hop=hop, policy="drop_newest", clock=clock
        )
        for k in range(n)
    ]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, int | float], list[tuple[str, int, int]]]:
    length = draw(st.integers(1, 4))
    params: dict[str, int | float] = {
        "streams": draw(st.integers(1, 3)),
        "length": length,
        "hop": draw(st.integers(1, length)),
        "max_batch_size": draw(st.integers(1, 6)),
        "batch_timeout": draw(st.sampled_from([0.0, 0.5, 2.0])),
    }
    op = st.one_of(
        st.tuples(st.just("push"), st.integers(0, 2), st.integers(0, 12)),
        st.tuples(st.just("tick"), st.just(0), st.integers(1, 3)),
        st.tuples(st.just("batch"), st.just(0), st.just(0)),
    )
    return params, draw(st.lists(op, max_size=40))


def check_arrays(batch: Batch) -> None:
    windows = batch.windows
    assert len(batch) == len(windows) == batch.data.shape[0]
    np.testing.assert_array_equal(batch.data, np.stack([w.data for w in windows]))
    assert batch.streams == [w.stream for w in windows]
    np.testing.assert_array_equal(batch.seq, [w.seq for w in windows])
    np.testing.assert_array_equal(batch.start_index, [w.start_index for w in windows])
    np.testing.assert_array_equal(batch.start_ts, [w.start_ts for w in windows])
    np.testing.assert_array_equal(batch.end_ts, [w.end_ts for w in windows])
    np.testing.assert_array_equal(batch.ready_at, [w.ready_at for w in windows])
    np.testing.assert_array_equal(batch.gap_before, [w.gap_before for w in windows])


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_batcher_matches_the_collate_reference(
    scenario: tuple[dict[str, int | float], list[tuple[str, int, int]]],
) -> None:
    params, ops = scenario
    clock = Clock()
    n, length, hop = int(params["streams"]), int(params["length"]), int(params["hop"])
    ours_buffers = streams(n, clock, length, hop)
    ref_buffers = streams(n, clock, length, hop)
    size, timeout = int(params["max_batch_size"]), float(params["batch_timeout"])
    batcher = Batcher(ours_buffers, max_batch_size=size, batch_timeout=timeout, clock=clock)
    reference = ReferenceBatcher(ref_buffers, size, timeout)
    offered = [0] * n
    for kind, stream, amount in ops:
        if kind == "push":
            k = stream % n
            ids = np.arange(offered[k], offered[k] + amount)
            offered[k] += amount
            samples = np.stack([ids, -ids], axis=1).astype(np.float32)
            assert ours_buffers[k].push_block(samples, ids + 0.5) == ref_buffers[k].push_block(
                samples, ids + 0.5
            )
        elif kind == "tick":
            clock.now += amount * 0.5
        else:
            got = batcher.next_batch(timeout=0)
            expected = reference.next_batch(clock.now)
            if not expected:
                assert got is None
                continue
            assert got is not None
            assert [(w.stream, w.seq) for w in got.windows] == [(w.stream, w.seq) for w in expected]
            np.testing.assert_array_equal(got.data, np.stack([w.data for w in expected]))
            check_arrays(got)
        assert batcher.pending == len(reference.pending)
    # whatever is left comes out of drain, exactly once
    drained = [(w.stream, w.seq) for b in batcher.drain() for w in b.windows]
    left = reference.pending + [w for b in ref_buffers for w in b.pop_windows(10_000)]
    assert sorted(drained) == sorted((w.stream, w.seq) for w in left)


def test_batch_of_parts_is_zero_copy_for_one_part_and_arrays_need_no_windows() -> None:
    buf = StreamBuffer("a", 1, 64, window_length=2, hop=2)
    ids = np.arange(8, dtype=np.float32)
    buf.push_block(ids[:, None], ids.astype(np.float64))
    part = buf.pop_batch(4)
    assert part is not None
    batch = Batch.of_parts([part])
    assert batch.data is part.data
    assert batch.seq.tolist() == [0, 1, 2, 3]
    assert batch.start_ts.tolist() == [0.0, 2.0, 4.0, 6.0]
    assert part._windows is None  # reading arrays built no Window objects
    assert [w.seq for w in batch.windows] == [0, 1, 2, 3]
    assert batch.parts == (part,)


def test_batch_still_needs_windows_and_data() -> None:
    with pytest.raises(TypeError, match="needs both"):
        Batch(windows=None, data=np.zeros((1, 2, 1), np.float32))
