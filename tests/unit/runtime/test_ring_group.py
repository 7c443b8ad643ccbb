"""RingGroup: one gather for every stream's windows, the same windows per-stream pops give."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgefleet.runtime.batcher import Batcher
from edgefleet.runtime.ring_group import RingGroup
from edgefleet.runtime.ringbuffer import StreamBuffer
from edgefleet.runtime.windows import WindowBatch

pytestmark = pytest.mark.unit

CHANNELS = 3


def make(name: str, **kwargs: object) -> StreamBuffer:
    settings: dict[str, object] = {"window_length": 5, "hop": 2, "capacity": 23, **kwargs}
    return StreamBuffer(name, CHANNELS, clock=lambda: 7.0, **settings)  # type: ignore[arg-type]


def block(stream: int, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(start, start + n, dtype=np.float64)
    data = (idx[:, None] * 10 + np.arange(CHANNELS) + stream * 1000).astype(np.float32)
    return data, idx + stream * 0.5


def same(got: WindowBatch, want: WindowBatch) -> None:
    assert (got.stream, got.seq0, got.segments) == (want.stream, want.seq0, want.segments)
    np.testing.assert_array_equal(got.data, want.data)
    np.testing.assert_array_equal(got.start_ts, want.start_ts)
    np.testing.assert_array_equal(got.end_ts, want.end_ts)
    np.testing.assert_array_equal(got.ready_at, want.ready_at)


def test_group_pop_equals_per_stream_pops_across_wrap_and_uneven_streams() -> None:
    """Twin buffers, one grouped and one plain per stream, fed the same blocks: every group pop
    gives what pop_batch gives on the plain twins, and the counters agree, over many ring wraps."""
    rng = np.random.default_rng(3)
    grouped = [make(f"s{i}") for i in range(4)]
    plain = [make(f"s{i}") for i in range(4)]
    group = RingGroup(grouped)
    written = [0] * 4
    popped = declined = short = wrapped = 0
    for _ in range(300):
        for i in range(4):
            n = int(rng.integers(0, 5))
            data, ts = block(i, written[i], n)
            assert grouped[i].push_block(data, ts) == plain[i].push_block(data, ts)
            written[i] += n
        count = int(rng.integers(1, 4))
        got = group.pop(count)
        if got is None:
            declined += 1
            # the fallback: both sides pop stream by stream, as the batcher does
            for g, p in zip(grouped, plain, strict=True):
                a, b = g.pop_batch(count), p.pop_batch(count)
                assert (a is None) == (b is None)
                if a is not None and b is not None:
                    same(a, b)
            continue
        popped += 1
        fewest = min(p.windows_ready() for p in plain)
        assert 1 <= len(got.parts[0]) == min(count, fewest)
        short += len(got.parts[0]) < count
        count = len(got.parts[0])
        # the gather has a path for window runs that cross a ring's end and one for the rest
        wrapped += any(int(s) % 23 + (count - 1) * 2 + 5 > 23 for s in got.starts)
        assert got.data.shape == (4 * count, 5, CHANNELS)
        for i, part in enumerate(got.parts):
            want = plain[i].pop_batch(count)
            assert want is not None
            assert len(want) == count
            same(part, want)
            np.testing.assert_array_equal(got.data[i * count : (i + 1) * count], want.data)
        np.testing.assert_array_equal(got.seq, np.concatenate([p.seq for p in got.parts]))
        np.testing.assert_array_equal(got.ready_at, np.concatenate([p.ready_at for p in got.parts]))
    for g, p in zip(grouped, plain, strict=True):
        assert g.stats == p.stats
    assert popped > 20
    assert declined > 10
    assert 5 < wrapped < popped - 5


def test_streams_in_step_pop_as_one_slice_equal_to_per_stream_pops_and_own_their_copy() -> None:
    """Streams that always receive the same number of samples sit at the same ring rows: the
    gather takes one slice across them. Same windows as pop_batch, over wraps and counts > 1, and
    the popped arrays are copies that later pushes (a whole ring's worth) leave unchanged."""
    rng = np.random.default_rng(5)
    grouped = [make(f"s{i}") for i in range(3)]
    plain = [make(f"s{i}") for i in range(3)]
    group = RingGroup(grouped)
    written = in_step = multi = 0
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(200):
        n = int(rng.integers(0, 5))
        for i in range(3):
            data, ts = block(i, written, n)
            grouped[i].push_block(data, ts)
            plain[i].push_block(data, ts)
        written += n
        got = group.pop(int(rng.integers(1, 4)))
        if got is None:
            continue
        count = got.count
        wraps = int(got.starts[0]) % 23 + (count - 1) * 2 + 5 > 23
        in_step += not wraps
        multi += count > 1 and not wraps
        for i, part in enumerate(got.parts):
            want = plain[i].pop_batch(count)
            assert want is not None
            same(part, want)
        kept.append((got.data, got.data.copy()))
    assert in_step > 40
    assert multi > 10
    for data, copy in kept:  # long since overwritten in the rings
        np.testing.assert_array_equal(data, copy)


def test_the_stream_with_fewest_windows_sets_the_count_and_a_gap_declines() -> None:
    a, b = make("a", policy="drop_newest"), make("b", policy="drop_newest")
    group = RingGroup([a, b])
    a.push_block(*block(0, 0, 9))  # three windows
    b.push_block(*block(1, 0, 5))  # one window
    assert RingGroup([make("x"), make("y")]).pop(1) is None  # no window yet: nothing popped
    got = group.pop(3)  # as many of each as b, the stream with the fewest, has
    assert got is not None
    assert [len(p) for p in got.parts] == [1, 1]
    assert a.windows_ready() == 2
    # b refuses samples once full: a gap, which only the per-stream path handles
    b.push_block(*block(1, 5, 30))
    a.push_block(*block(0, 9, 4))
    assert b.stats.refused > 0
    assert group.pop(1) is None
    part = b.pop_batch(10)
    assert part is not None
    assert part.segments[0][0] >= 0


def test_a_producer_blocked_for_room_is_woken_by_a_group_pop() -> None:
    a, b = make("a", policy="block", block_timeout=30.0), make("b", policy="block")
    group = RingGroup([a, b])
    a.push_block(*block(0, 0, 23))
    b.push_block(*block(1, 0, 23))
    accepted: list[int] = []
    thread = threading.Thread(target=lambda: accepted.append(a.push_block(*block(0, 23, 6))))
    thread.start()
    while not a._waiting:  # the producer is waiting for room under the buffer's lock
        thread.join(0.01)
    assert group.pop(6) is not None  # frees 12 samples, more than the half ring it waits for
    thread.join(30.0)
    assert accepted == [6]
    assert a.stats.refused == 0


def test_the_batcher_releases_a_group_pop_as_one_batch_and_falls_back_per_stream() -> None:
    buffers = [make(f"s{i}") for i in range(3)]
    batcher = Batcher(buffers, max_batch_size=6, batch_timeout=0.0, group=RingGroup(buffers))
    for i, buf in enumerate(buffers):
        buf.push_block(*block(i, 0, 9))  # three windows each
    batch = batcher.next_batch(timeout=0)
    assert batch is not None
    assert len(batch) == 6
    assert batch.streams == ["s0", "s0", "s1", "s1", "s2", "s2"]
    np.testing.assert_array_equal(batch.seq, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(batch.data, np.stack([w.data for w in batch.windows]))
    np.testing.assert_array_equal(batch.end_ts, [w.end_ts for w in batch.windows])
    # one window left in each; s2 gets four more: the group pop declines nothing here (one each),
    # then the round-robin takes s2's extra ones
    buffers[2].push_block(*block(2, 9, 8))
    batch = batcher.next_batch(timeout=0)
    assert batch is not None
    assert sorted(batch.streams) == ["s0", "s1", "s2", "s2", "s2", "s2"]
    assert [w.seq for w in batch.windows if w.stream == "s2"] == [2, 3, 4, 5]
    np.testing.assert_array_equal(batch.data, np.stack([w.data for w in batch.windows]))


def test_groups_refuse_mixed_shapes_used_buffers_and_foreign_buffers() -> None:
    with pytest.raises(ValueError, match="two or more"):
        RingGroup([make("a")])
    with pytest.raises(ValueError, match="one \\(capacity, channels, window_length, hop\\)"):
        RingGroup([make("a"), make("b", hop=1)])
    used = make("u")
    used.push_block(*block(0, 0, 1))
    with pytest.raises(ValueError, match="already used: u"):
        RingGroup([make("a"), used])
    a, b, c = make("a"), make("b"), make("c")
    with pytest.raises(ValueError, match="exactly the batcher's buffers"):
        Batcher([a, b, c], max_batch_size=4, batch_timeout=0.1, group=RingGroup([a, b]))


def test_a_group_batch_builds_its_parts_only_when_read_and_they_match_the_arrays() -> None:
    buffers = [make(f"s{i}") for i in range(3)]
    group = RingGroup(buffers)
    for i, buf in enumerate(buffers):
        buf.push_block(*block(i, 0, 9))  # three windows each
    batcher = Batcher(buffers, max_batch_size=6, batch_timeout=1.0, group=group)
    batch = batcher.next_batch(timeout=0)
    assert batch is not None
    assert len(batch) == 6
    assert batch._parts is None  # the hot path reads arrays: no per-stream objects yet
    assert batch.streams == ["s0", "s0", "s1", "s1", "s2", "s2"]
    assert batch.codes is None
    assert batch._parts is None
    parts = batch.parts  # built on demand, views of the batch's arrays
    assert [(p.stream, p.seq0, len(p)) for p in parts] == [("s0", 0, 2), ("s1", 0, 2), ("s2", 0, 2)]
    np.testing.assert_array_equal(np.concatenate([p.data for p in parts]), batch.data)
    np.testing.assert_array_equal(np.concatenate([p.start_ts for p in parts]), batch.start_ts)
    np.testing.assert_array_equal(batch.start_index, [0, 2, 0, 2, 0, 2])
    assert [w.stream for w in batch.windows] == batch.streams
    assert [w.seq for w in batch.windows] == batch.seq.tolist() == [0, 1, 0, 1, 0, 1]


def test_windows_popped_per_stream_after_a_group_pop_join_it_in_order() -> None:
    buffers = [make(f"s{i}") for i in range(2)]
    group = RingGroup(buffers)
    plain = [make(f"s{i}") for i in range(2)]
    for i in range(2):
        for buf in (buffers[i], plain[i]):
            buf.push_block(*block(i, 0, 13))  # five windows each
    # room 5 for 2 streams: a group pop of 2 each, then one more from a stream on its own
    batcher = Batcher(buffers, max_batch_size=5, batch_timeout=1.0, group=group)
    batch = batcher.next_batch(timeout=0)
    assert batch is not None
    assert len(batch) == 5
    want = [plain[0].pop_batch(2), plain[1].pop_batch(2)]
    extra = batch.parts[2]
    want.append(plain[int(extra.stream[1])].pop_batch(1))
    assert len(batch.parts) == 3
    for got, expected in zip(batch.parts, want, strict=True):
        assert expected is not None
        same(got, expected)
    np.testing.assert_array_equal(batch.data, np.concatenate([p.data for p in batch.parts]))
    assert batch.streams == ["s0", "s0", "s1", "s1", extra.stream]
