"""Property tests: StreamBuffer against a per-sample, list-based reference model.

Every offered sample i carries its own identity: channel c holds ``4 * i + c`` and its timestamp is
``1000 + i / 64`` (both exact), so a window's contents prove which offered samples it holds.

What is checked after every operation, under every policy:

* each window holds ``window_length`` *consecutive offered* samples: nothing reordered, duplicated
  or refused inside it, and no window straddles a gap (a refused sample would break the run);
* windows of a stream start strictly later than the previous one, ``seq`` counts 0, 1, 2, ...;
* the buffer emits exactly the windows the reference emits (start, data, timestamps, gap flag);
* accounting: ``pushed == covered + dropped + pending``, where ``covered`` is the number of distinct
  offered samples that appeared in some window and ``dropped`` is the reference's count of samples
  refused or skipped before any window covered them; under ``drop_oldest`` nothing is refused;
* each window's ``ready_at`` is the clock reading at the push that stored its last sample (the
  clock reads a distinct value per operation);
* a consumer that popped everything and went to sleep is notified before a new window is ready;
* at the end, after popping everything, fewer than ``window_length`` samples remain pending.

Pops go through ``pop_windows`` or the batch-level ``pop_batch`` (drawn per pop), so both forms are
checked against the same reference: ``pop_batch``'s arrays and its lazily built windows alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from edgefleet.runtime.ringbuffer import StreamBuffer, Window, WindowBatch
from edgefleet.types import BackpressurePolicy


class BufferParams(TypedDict):
    """StreamBuffer's settings as one scenario draws them."""

    channels: int
    window_length: int
    hop: int
    capacity: int
    policy: BackpressurePolicy


POLICIES: list[BackpressurePolicy] = ["drop_oldest", "drop_newest", "block"]

pytestmark = pytest.mark.unit


def values(offered: np.ndarray, channels: int) -> np.ndarray:
    return (offered[:, None] * 4 + np.arange(channels)[None, :]).astype(np.float32)


def stamps(offered: np.ndarray) -> np.ndarray:
    return 1000.0 + offered.astype(np.float64) / 64


@dataclass
class RefWindow:
    start: int  # accepted index
    offered: list[int]
    gap_before: bool
    ready_at: float


@dataclass
class Reference:
    """The documented semantics, one sample at a time, on plain lists."""

    capacity: int
    length: int
    hop: int
    policy: str
    accepted: list[int] = field(default_factory=list)  # offered index of each accepted sample
    arrival: list[float] = field(default_factory=list)  # clock reading when each was accepted
    dropped_offered: set[int] = field(default_factory=set)
    next_start: int = 0
    decided: int = 0
    gaps: list[int] = field(default_factory=list)
    last_gap: int = -1
    gap_flag: bool = False
    refused: int = 0
    lost: int = 0

    def offer(self, i: int, now: float) -> bool:
        w = len(self.accepted)
        if w - self.next_start >= self.capacity:
            if self.policy == "drop_oldest":
                self.next_start += self.hop
                self._lose_until(self.next_start)
            else:
                self.refused += 1
                self.dropped_offered.add(i)
                if w != self.last_gap:
                    self.last_gap = w
                    self.gaps.append(w)
                return False
        self.accepted.append(i)
        self.arrival.append(now)
        return True

    def _lose_until(self, start: int) -> None:
        if start > self.decided:
            self.lost += start - self.decided
            self.dropped_offered.update(self.accepted[self.decided : start])
            self.decided = start
            if self.policy == "drop_oldest":
                self.gaps.append(start)

    def pop(self, k: int) -> list[RefWindow]:
        out: list[RefWindow] = []
        while len(out) < k:
            while self.gaps and self.gaps[0] <= self.next_start:
                self.gaps.pop(0)
                self.gap_flag = True
            if self.gaps and self.gaps[0] < self.next_start + self.length:
                self.next_start = self.gaps.pop(0)
                self.gap_flag = True
                self._lose_until(self.next_start)
                continue
            end = self.next_start + self.length
            if end > len(self.accepted):
                break
            offered = self.accepted[self.next_start : end]
            out.append(RefWindow(self.next_start, offered, self.gap_flag, self.arrival[end - 1]))
            self.gap_flag = False
            self.decided = end
            self.next_start += self.hop
        return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[BufferParams, list[tuple[str, int]]]:
    length = draw(st.integers(1, 8))
    params: BufferParams = {
        "channels": draw(st.integers(1, 3)),
        "window_length": length,
        "hop": draw(st.integers(1, length)),
        "capacity": draw(st.integers(length, 3 * length + 5)),
        "policy": draw(st.sampled_from(POLICIES)),
    }
    cap = params["capacity"]
    op = st.one_of(
        st.tuples(st.just("push"), st.integers(1, 3)),
        st.tuples(st.just("block"), st.integers(0, 2 * cap + 3)),
        st.tuples(st.just("pop"), st.integers(0, 6)),
        st.tuples(st.just("pop_batch"), st.integers(0, 6)),
    )
    return params, draw(st.lists(op, max_size=40))


def check_window(w: Window, ref: RefWindow, channels: int, seq: int, name: str) -> None:
    offered = np.asarray(ref.offered)
    assert w.stream == name
    assert w.seq == seq
    assert w.start_index == ref.start
    assert w.gap_before == ref.gap_before
    assert w.data.dtype == np.float32
    assert w.data.flags.c_contiguous
    np.testing.assert_array_equal(w.data, values(offered, channels))
    assert w.start_ts == stamps(offered)[0]
    assert w.end_ts == stamps(offered)[-1]
    assert w.ready_at == ref.ready_at
    # the window is a run of consecutive offered samples: nothing reordered, duplicated or skipped
    first = int(offered[0])
    np.testing.assert_array_equal(offered, np.arange(first, first + len(offered)))


def check_batch(batch: WindowBatch, expected: list[RefWindow], channels: int, seq0: int, name: str) -> None:
    """The batch-level form: one (N, window_length, channels) array and metadata arrays."""
    n = len(expected)
    assert len(batch) == n
    assert batch.stream == name
    assert batch.seq0 == seq0
    assert batch.data.shape == (n, len(expected[0].offered), channels)
    assert batch.data.dtype == np.float32
    assert batch.data.flags.c_contiguous
    offered = np.asarray([r.offered for r in expected])
    np.testing.assert_array_equal(batch.data, values(offered.reshape(-1), channels).reshape(batch.data.shape))
    np.testing.assert_array_equal(batch.start_ts, stamps(offered[:, 0]))
    np.testing.assert_array_equal(batch.end_ts, stamps(offered[:, -1]))
    np.testing.assert_array_equal(batch.seq, np.arange(seq0, seq0 + n))
    np.testing.assert_array_equal(batch.start_index, [r.start for r in expected])
    np.testing.assert_array_equal(batch.gap_before, [r.gap_before for r in expected])
    np.testing.assert_array_equal(batch.ready_at, [r.ready_at for r in expected])
    assert np.all(np.diff(batch.ready_at) >= 0)
    assert batch.oldest_ready_at == batch.ready_at.min()
    assert sum(count for _, count, _ in batch.segments) == n
    event(f"pop_batch: {min(len(batch.segments), 2)} segment(s)")  # gaps inside one pop do occur


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_stream_buffer_matches_reference(scenario: tuple[BufferParams, list[tuple[str, int]]]) -> None:
    params, ops = scenario
    channels = params["channels"]
    policy = params["policy"]
    notified: list[int] = []  # accepted-sample count at each notification

    def accepted_now() -> int:
        stats = buf.stats
        return stats.pushed - stats.refused

    exhausted = True  # the consumer has seen every ready window, so it would now sleep
    now = [0.0]  # the buffer's clock: a distinct reading per operation
    buf = StreamBuffer(
        "s",
        channels,
        params["capacity"],
        window_length=params["window_length"],
        hop=params["hop"],
        policy=policy,
        block_timeout=0.0,  # a sequential test has no consumer to wait for: block == refuse at once
        notify=lambda: notified.append(accepted_now()),
        clock=lambda: now[0],
    )
    ref = Reference(buf.capacity, buf.window_length, buf.hop, policy)
    offered_total = 0
    covered: set[int] = set()
    seq = 0
    last_start = -1

    def pop(k: int, as_batch: bool = False) -> None:
        nonlocal seq, last_start, exhausted
        expected = ref.pop(k)
        if as_batch:
            batch = buf.pop_batch(k)
            if not expected:
                assert batch is None
            else:
                assert batch is not None
                check_batch(batch, expected, channels, seq, "s")
            got = [] if batch is None else batch.windows
        else:
            got = buf.pop_windows(k)
        assert len(got) == len(expected)
        if got and exhausted:
            # the wake-up must come once the first window was complete, not before
            assert notified, "a window became ready without waking a sleeping consumer"
            assert max(notified) >= got[0].start_index + buf.window_length
        notified.clear()
        exhausted = len(got) < k
        for w, r in zip(got, expected, strict=True):
            check_window(w, r, channels, seq, "s")
            assert r.offered[0] > last_start
            last_start = r.offered[0]
            covered.update(r.offered)
            seq += 1

    for step, (kind, n) in enumerate(ops):
        now[0] = 100.0 + step
        if kind in ("push", "block"):
            ids = np.arange(offered_total, offered_total + n)
            offered_total += n
        if kind == "push":
            for i in ids:
                now[0] += 0.125  # each single push its own reading
                got = buf.push(values(np.array([i]), channels)[0], float(stamps(np.array([i]))[0]))
                assert got == ref.offer(int(i), now[0])
        elif kind == "block":
            accepted = buf.push_block(values(ids, channels), stamps(ids))
            assert accepted == sum(ref.offer(int(i), now[0]) for i in ids)
        else:
            pop(n, as_batch=kind == "pop_batch")
        stats = buf.stats
        assert stats.pushed == offered_total
        assert stats.dropped == ref.refused + ref.lost == len(ref.dropped_offered)
        assert stats.refused == ref.refused
        assert stats.covered == len(covered)
        assert stats.pushed == stats.covered + stats.dropped + stats.pending
        assert stats.windows_emitted == seq
        assert 0 <= stats.fill <= stats.capacity
        assert covered.isdisjoint(ref.dropped_offered)
        if policy == "drop_oldest":
            assert stats.refused == 0

    pop(10_000)
    final = buf.stats
    assert final.pending < buf.window_length
    assert final.pushed == final.covered + final.dropped + final.pending


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda length: st.tuples(
            st.just(length),
            st.integers(1, length),
            st.lists(st.integers(0, 40), max_size=10),
        )
    )
)
def test_without_backpressure_every_sample_is_delivered(args: tuple[int, int, list[int]]) -> None:
    """A consumer that keeps up loses nothing: windows tile the stream on the hop grid."""
    length, hop, blocks = args
    buf = StreamBuffer("s", 2, length + 64, window_length=length, hop=hop, policy="drop_newest")
    total = 0
    windows: list[Window] = []
    for n in blocks:
        ids = np.arange(total, total + n)
        assert buf.push_block(values(ids, 2), stamps(ids)) == n
        total += n
        windows += buf.pop_windows(1_000)
    assert [w.start_index for w in windows] == list(range(0, total - length + 1, hop))
    assert not any(w.gap_before for w in windows)
    stats = buf.stats
    assert stats.dropped == 0
    assert stats.covered + stats.pending == total
