"""The batcher wakes its consumer once per batch, not once per window (real threads, no timing).

A sleeping consumer is woken by the first window (it starts the batch timeout) and then only
when enough windows arrived to fill the batch; a push that completes several windows counts them
all. Each test waits for real events with generous limits; none asserts a duration.
"""

from __future__ import annotations

import threading

import numpy as np

from edgefleet.runtime.batcher import Batch, Batcher
from edgefleet.runtime.ringbuffer import StreamBuffer, counts_windows
from tests.support.waiting import wait_until


def make(name: str) -> StreamBuffer:
    return StreamBuffer(name, 1, window_length=2, hop=2, capacity=64)


def feed(buf: StreamBuffer, windows: int) -> None:
    idx = np.arange(2 * windows, dtype=np.float32)
    buf.push_block(idx[:, None], idx.astype(np.float64))


def test_a_counted_listener_hears_how_many_windows_a_push_completed() -> None:
    heard: list[int] = []

    @counts_windows
    def listener(windows: int) -> None:
        heard.append(windows)

    buf = make("a")
    buf.notify = listener
    feed(buf, 3)
    buf.push([7.0], 100.0)  # half a window: nothing completed, nothing heard
    buf.push([8.0], 101.0)
    assert heard == [3, 1]


def test_a_plain_listener_is_still_called_without_arguments() -> None:
    calls: list[int] = []
    buf = make("a")
    buf.notify = lambda: calls.append(1)
    feed(buf, 3)
    assert calls == [1]


def test_consumer_sleeps_through_windows_that_cannot_fill_the_batch() -> None:
    streams = [make(f"s{i}") for i in range(8)]
    batcher = Batcher(streams, max_batch_size=8, batch_timeout=3600)
    got: list[Batch | None] = []
    consumer = threading.Thread(target=lambda: got.append(batcher.next_batch(timeout=120)))
    consumer.start()
    feed(streams[0], 1)  # the first window wakes the consumer: it starts the timeout
    wait_until(lambda: batcher.pending == 1 and batcher._need == 7, what="the consumer to wait for 7 more")
    notified: list[int] = []
    ring = batcher._ring

    def counting_ring() -> None:
        notified.append(1)
        ring()

    batcher._ring = counting_ring  # type: ignore[method-assign]
    for buf in streams[1:7]:
        feed(buf, 1)
    assert notified == []  # 7 of 8 windows: no reason to wake
    feed(streams[7], 1)
    consumer.join(timeout=90)
    assert notified == [1]
    assert got
    batch = got[0]
    assert batch is not None  # released full, long before its 3600 s timeout
    assert sorted(batch.streams) == [f"s{i}" for i in range(8)]


def test_one_push_of_several_windows_fills_the_batch_and_wakes_the_consumer() -> None:
    a, b = make("a"), make("b")
    batcher = Batcher([a, b], max_batch_size=5, batch_timeout=3600)
    got: list[Batch | None] = []
    consumer = threading.Thread(target=lambda: got.append(batcher.next_batch(timeout=120)))
    consumer.start()
    feed(a, 1)
    wait_until(lambda: batcher.pending == 1 and batcher._need == 4, what="the consumer to wait for 4 more")
    feed(b, 4)  # one push, four windows: counted as four
    consumer.join(timeout=90)
    assert got
    batch = got[0]
    assert batch is not None
    assert len(batch) == 5


def test_held_wakeups_wake_the_consumer_once_at_release() -> None:
    # The sources' I/O thread holds the consumer's wake-ups over one pass of pushes into all its
    # streams: a sleeping consumer is woken once, at release, with every window there.
    streams = [make(f"h{i}") for i in range(4)]
    batcher = Batcher(streams, max_batch_size=4, batch_timeout=3600)
    got: list[Batch | None] = []
    consumer = threading.Thread(target=lambda: got.append(batcher.next_batch(timeout=120)))
    consumer.start()
    wait_until(lambda: batcher._sleeping and batcher._need == 1, what="the consumer to sleep")
    notified: list[int] = []
    ring = batcher._ring

    def counting_ring() -> None:
        notified.append(1)
        ring()

    batcher._ring = counting_ring  # type: ignore[method-assign]
    batcher.hold_wakeups()
    for buf in streams:
        feed(buf, 1)
    assert notified == []  # held: the first window (and the full batch) did not wake it
    assert got == []
    batcher.release_wakeups()
    consumer.join(timeout=90)
    assert not consumer.is_alive()
    assert notified == [1]
    batch = got[0]
    assert batch is not None
    assert len(batch) == 4
    assert sorted(set(batch.streams)) == ["h0", "h1", "h2", "h3"]


def test_a_release_with_nothing_arrived_wakes_nobody() -> None:
    batcher = Batcher([make("q")], max_batch_size=2, batch_timeout=3600)
    notified: list[int] = []
    batcher._ring = lambda: notified.append(1)  # type: ignore[method-assign]
    batcher.hold_wakeups()
    batcher.release_wakeups()
    assert notified == []


def test_rings_nobody_answered_cost_one_more_look_and_lose_nothing() -> None:
    # Producers ring without a lock; a ring the consumer did not sleep through stays rung, so its
    # next sleep ends at once: it must look again and go back to sleep, not return early.
    buf = make("r")
    batcher = Batcher([buf], max_batch_size=4, batch_timeout=3600)
    released: list[int] = []
    bell = batcher._bell

    class CountingBell:
        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            return bell.acquire(blocking, timeout)

        def release(self) -> None:
            released.append(1)
            bell.release()

    batcher._bell = CountingBell()  # type: ignore[assignment]
    batcher._ring()
    batcher._ring()  # a second ring before any answer is the same ring: no second release
    assert released == [1]
    assert batcher.next_batch(timeout=0.2) is None  # nothing there: slept again until the timeout
    assert not batcher._rung  # answered
    got: list[Batch | None] = []
    consumer = threading.Thread(target=lambda: got.append(batcher.next_batch(timeout=120)))
    consumer.start()
    wait_until(lambda: batcher._sleeping, what="the consumer to sleep")
    feed(buf, 1)  # starts the batch timeout: the consumer wakes, then waits for 3 more
    wait_until(lambda: batcher._need == 3, what="the consumer to wait for 3 more")
    feed(buf, 3)
    consumer.join(timeout=90)
    assert not consumer.is_alive()
    batch = got[0]
    assert batch is not None
    assert len(batch) == 4


def test_close_wakes_a_sleeping_consumer() -> None:
    batcher = Batcher([make("c")], max_batch_size=4, batch_timeout=3600)
    got: list[Batch | None] = []
    consumer = threading.Thread(target=lambda: got.append(batcher.next_batch(timeout=None)))
    consumer.start()
    wait_until(lambda: batcher._sleeping, what="the consumer to sleep")
    batcher.close()
    consumer.join(timeout=90)
    assert not consumer.is_alive()
    assert got == [None]
