"""Batcher over real StreamBuffers: fairness, timeouts, close, drain, settings, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgefleet.errors import ConfigError
from edgefleet.runtime.batcher import Batch, Batcher
from edgefleet.runtime.ringbuffer import StreamBuffer

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(name: str, clock: FakeClock | None = None, **kwargs: object) -> StreamBuffer:
    settings: dict[str, object] = {"window_length": 2, "hop": 2, "capacity": 64, **kwargs}
    if clock is not None:
        settings["clock"] = clock
    return StreamBuffer(name, 1, **settings)  # type: ignore[arg-type]


def feed(buf: StreamBuffer, windows: int, start: int = 0) -> None:
    n = 2 * windows
    idx = np.arange(start, start + n, dtype=np.float32)
    buf.push_block(idx[:, None], idx.astype(np.float64))


def test_full_batch_is_released_at_once_and_streams_share_it_fairly() -> None:
    clock = FakeClock()
    a, b, c = (make(n, clock) for n in "abc")
    feed(a, 10)
    feed(b, 10)
    feed(c, 1)
    batcher = Batcher([a, b, c], max_batch_size=6, batch_timeout=1.0, clock=clock)
    batch = batcher.next_batch(timeout=0)
    assert batch is not None
    assert batch.data.shape == (6, 2, 1)
    assert batch.data.dtype == np.float32
    streams = [w.stream for w in batch.windows]
    assert streams.count("c") == 1
    assert abs(streams.count("a") - streams.count("b")) <= 1
    np.testing.assert_array_equal(batch.data, np.stack([w.data for w in batch.windows]))


def test_partial_batch_waits_for_the_timeout() -> None:
    clock = FakeClock()
    a = make("a", clock)
    batcher = Batcher([a], max_batch_size=4, batch_timeout=0.5, clock=clock)
    feed(a, 2)
    assert batcher.next_batch(timeout=0) is None
    assert batcher.pending == 2
    clock.now += 0.5
    batch = batcher.next_batch(timeout=0)
    assert batch is not None
    assert [w.seq for w in batch.windows] == [0, 1]
    assert batcher.pending == 0


def test_round_robin_does_not_starve_a_quiet_stream() -> None:
    clock = FakeClock()
    busy, quiet = make("busy", clock, capacity=256), make("quiet", clock)
    feed(busy, 100)
    feed(quiet, 1)
    batcher = Batcher([busy, quiet], max_batch_size=4, batch_timeout=1.0, clock=clock)
    first = batcher.next_batch(timeout=0)
    assert first is not None
    assert "quiet" in [w.stream for w in first.windows]


def test_real_clock_timeout_releases_a_partial_batch() -> None:
    a = make("a")
    batcher = Batcher([a], max_batch_size=100, batch_timeout=0.01)
    feed(a, 3)
    batch = batcher.next_batch(timeout=30)
    assert batch is not None
    assert len(batch) == 3


def test_next_batch_returns_none_on_timeout_when_idle() -> None:
    batcher = Batcher([make("a")], max_batch_size=4, batch_timeout=0.01)
    assert batcher.next_batch(timeout=0.01) is None


def test_close_wakes_a_waiting_consumer_and_drain_returns_the_rest() -> None:
    a, b = make("a"), make("b")
    batcher = Batcher([a, b], max_batch_size=4, batch_timeout=3600)
    result: list[object] = []
    consumer = threading.Thread(target=lambda: result.append(batcher.next_batch()))
    consumer.start()
    feed(a, 1)  # pending but not due for an hour
    batcher.close()
    consumer.join(timeout=30)
    assert result == [None]
    assert batcher.closed
    assert batcher.next_batch(timeout=0) is None
    feed(a, 5, start=2)
    feed(b, 4)
    batches = batcher.drain()
    assert [len(x) for x in batches] == [4, 4, 2]
    counted = sorted((w.stream, w.seq) for x in batches for w in x.windows)
    assert counted == [("a", i) for i in range(6)] + [("b", i) for i in range(4)]
    assert batcher.drain() == []


def test_a_window_arriving_wakes_a_sleeping_consumer() -> None:
    a = make("a")
    batcher = Batcher([a], max_batch_size=1, batch_timeout=3600)
    result: list[object] = []
    consumer = threading.Thread(target=lambda: result.append(batcher.next_batch(timeout=60)))
    consumer.start()
    feed(a, 1)
    consumer.join(timeout=90)
    assert result
    assert result[0] is not None


def test_existing_notify_target_is_kept() -> None:
    calls: list[int] = []
    a = make("a", notify=lambda: calls.append(1))
    batcher = Batcher([a], max_batch_size=1, batch_timeout=0)
    feed(a, 1)
    assert calls == [1]
    assert batcher.next_batch(timeout=0) is not None


@pytest.mark.parametrize(
    ("kwargs", "keys"),
    [
        ({"max_batch_size": 0}, ["max_batch_size"]),
        ({"batch_timeout": -1}, ["batch_timeout"]),
        ({"buffers": []}, ["buffers"]),
        ({"buffers": "mismatch"}, ["buffers"]),
        ({"buffers": "dupes"}, ["buffers"]),
    ],
)
def test_bad_settings_are_reported(kwargs: dict[str, object], keys: list[str]) -> None:
    buffers: object = [make("a"), make("b")]
    if kwargs.get("buffers") == "mismatch":
        buffers = [make("a"), make("b", window_length=3, hop=1)]
    elif kwargs.get("buffers") == "dupes":
        buffers = [make("a"), make("a")]
    elif "buffers" in kwargs:
        buffers = kwargs["buffers"]
    settings: dict[str, object] = {"max_batch_size": 4, "batch_timeout": 0.1}
    settings.update({k: v for k, v in kwargs.items() if k != "buffers"})
    with pytest.raises(ConfigError) as info:
        Batcher(buffers, **settings)  # type: ignore[arg-type]
    assert [i.key for i in info.value.issues] == keys
    assert info.value.hint


def test_threaded_producers_and_batcher_deliver_every_window_once() -> None:
    """One producer per stream, one consumer; content assertions only."""
    streams = 3
    per_stream = 400  # windows
    buffers = [make(f"s{k}", policy="block", capacity=8) for k in range(streams)]
    batcher = Batcher(buffers, max_batch_size=5, batch_timeout=0.001)

    def produce(buf: StreamBuffer) -> None:
        for i in range(per_stream):
            feed(buf, 1, start=2 * i)

    producers = [threading.Thread(target=produce, args=(b,)) for b in buffers]
    for p in producers:
        p.start()
    seen: dict[str, list[int]] = {b.name: [] for b in buffers}
    while sum(len(v) for v in seen.values()) < streams * per_stream:
        batch = batcher.next_batch(timeout=60)
        assert batch is not None
        assert 1 <= len(batch) <= 5
        for w, row in zip(batch.windows, batch.data, strict=True):
            np.testing.assert_array_equal(row, w.data)
            seen[w.stream].append(int(w.data[0, 0]))
    for p in producers:
        p.join()
    assert batcher.drain() == []
    for name, firsts in seen.items():
        assert firsts == list(range(0, 2 * per_stream, 2)), name
    assert all(b.stats.dropped == 0 for b in buffers)


def test_batch_data_matches_windows_whether_or_not_it_is_zero_copy() -> None:
    a, b = make("a"), make("b")
    feed(a, 4)
    feed(b, 4)
    whole = a.pop_windows(4)  # one cut, in order: the batch reuses its memory
    batch = Batch.of(whole)
    assert np.shares_memory(batch.data, whole[0].data)
    mixed = b.pop_windows(2) + b.pop_windows(2)  # two cuts: copied
    reordered = [whole[1], whole[0], whole[2], whole[3]]
    for windows in (whole, mixed, reordered, whole[:3]):
        got = Batch.of(windows)
        assert got.data.shape == (len(windows), 2, 1)
        np.testing.assert_array_equal(got.data, np.stack([w.data for w in windows]))
    assert not np.shares_memory(Batch.of(reordered).data, whole[0].data)
