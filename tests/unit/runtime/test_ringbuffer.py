"""StreamBuffer: settings, bad input, the three backpressure policies, notification, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgefleet.errors import ConfigError, EdgefleetError
from edgefleet.runtime.ringbuffer import BufferInputError, StreamBuffer
from edgefleet.types import BackpressurePolicy

pytestmark = pytest.mark.unit

POLICIES: tuple[BackpressurePolicy, ...] = ("drop_oldest", "drop_newest", "block")


def ramp(start: int, n: int, channels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Samples whose channel 0 is their offered index, timestamps index / 10."""
    idx = np.arange(start, start + n)
    data = np.stack([idx + 0.5 * c for c in range(channels)], axis=1).astype(np.float32)
    return data, idx / 10.0


def starts(buf: StreamBuffer, k: int = 1000) -> list[int]:
    return [int(w.data[0, 0]) for w in buf.pop_windows(k)]


@pytest.mark.parametrize(
    ("kwargs", "bad_keys"),
    [
        ({"channels": 0}, ["channels"]),
        ({"window_length": 4, "hop": 5}, ["hop"]),
        ({"hop": 0}, ["hop"]),
        ({"capacity": 3, "window_length": 4}, ["capacity"]),
        ({"policy": "drop_random"}, ["policy"]),
        ({"block_timeout": -1.0}, ["block_timeout"]),
        ({"name": ""}, ["name"]),
        (
            {"channels": True, "capacity": 2.5, "window_length": "8"},
            ["channels", "window_length", "capacity"],
        ),
    ],
)
def test_bad_settings_list_every_issue(kwargs: dict[str, object], bad_keys: list[str]) -> None:
    settings: dict[str, object] = {
        "name": "imu",
        "channels": 2,
        "capacity": 16,
        "window_length": 4,
        "hop": 2,
        **kwargs,
    }
    with pytest.raises(ConfigError) as info:
        StreamBuffer(**settings)  # type: ignore[arg-type]
    assert sorted(i.key for i in info.value.issues) == sorted(bad_keys)
    assert info.value.hint
    assert "imu" in str(info.value) or settings["name"] == ""


@pytest.mark.parametrize(
    "sample",
    [[1.0], [1.0, 2.0, 3.0], 5.0, np.zeros((2, 2), dtype=np.float32), ["a", "b"], None],
    ids=["short", "long", "scalar", "matrix", "text", "none"],
)
def test_push_rejects_wrong_shape_and_keeps_state(sample: object) -> None:
    buf = StreamBuffer("imu", 2, 8, window_length=2, hop=1)
    buf.push([0.0, 0.0], 0.0)
    with pytest.raises(BufferInputError) as info:
        buf.push(sample, 1.0)  # type: ignore[arg-type]
    assert isinstance(info.value, EdgefleetError)
    assert "imu" in info.value.message
    assert "2 float values" in info.value.message
    assert info.value.hint
    assert buf.stats.pushed == 1


@pytest.mark.parametrize(
    ("samples", "timestamps", "expected"),
    [
        (np.zeros((4, 3)), np.zeros(4), "(n, 2)"),
        (np.zeros(4), np.zeros(4), "(n, 2)"),
        (np.zeros((4, 2)), np.zeros(3), "(4,)"),
        (np.zeros((4, 2)), np.zeros((4, 1)), "(4,)"),
        # float32 / float64 arrays take push_block's fast path: the same checks must hold there
        (np.zeros((4, 3), np.float32), np.zeros(4), "(n, 2)"),
        (np.zeros(4, np.float32), np.zeros(4), "(n, 2)"),
        (np.zeros((), np.float32), np.zeros(4), "(n, 2)"),
        (np.zeros((4, 2, 1), np.float32), np.zeros(4), "(n, 2)"),
        (np.zeros((4, 2), np.float32), np.zeros(3), "(4,)"),
        (np.zeros((4, 2), np.float32), np.zeros((4, 1)), "(4,)"),
        (np.zeros((4, 2), np.float32), np.zeros(()), "(4,)"),
    ],
)
def test_push_block_rejects_wrong_shapes(samples: np.ndarray, timestamps: np.ndarray, expected: str) -> None:
    buf = StreamBuffer("imu", 2, 8, window_length=2, hop=1)
    with pytest.raises(BufferInputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        buf.push_block(samples, timestamps)
    assert buf.stats.pushed == 0


@pytest.mark.parametrize(
    ("samples", "timestamps", "expected"),
    [
        ([["a", "b"]], [0.0], "as floats"),
        (np.zeros((1, 2)), ["noon"], "epoch seconds"),
    ],
)
def test_non_numeric_input_is_refused(samples: object, timestamps: object, expected: str) -> None:
    buf = StreamBuffer("imu", 2, 8, window_length=2, hop=1)
    with pytest.raises(BufferInputError, match=expected):
        buf.push_block(samples, timestamps)  # type: ignore[arg-type]
    with pytest.raises(BufferInputError, match="epoch seconds"):
        buf.push([1.0, 2.0], "noon")  # type: ignore[arg-type]
    assert buf.stats.pushed == 0
    assert buf.push([1.0, 2.0], 1.0)
    assert buf.push([1.0, 2.0], 2.0)
    assert len(buf.pop_windows(5)) == 1


def test_windows_slide_by_hop_and_carry_timestamps() -> None:
    buf = StreamBuffer("imu", 2, 16, window_length=4, hop=2)
    data, ts = ramp(0, 9)
    assert buf.push_block(data, ts) == 9
    windows = buf.pop_windows(10)
    assert [w.seq for w in windows] == [0, 1, 2]
    assert [int(w.data[0, 0]) for w in windows] == [0, 2, 4]
    w = windows[1]
    np.testing.assert_array_equal(w.data, data[2:6])
    assert (w.start_ts, w.end_ts) == (0.2, 0.5)
    assert w.stream == "imu"
    assert w.data.shape == (4, 2)
    assert w.data.dtype == np.float32
    assert buf.pop_windows(10) == []
    buf.push(data[0] * 0 + 9, 0.9)
    assert starts(buf) == [6]


def test_window_data_is_a_copy_that_survives_wraparound() -> None:
    buf = StreamBuffer("imu", 2, 5, window_length=3, hop=3)
    data, ts = ramp(0, 3)
    buf.push_block(data, ts)
    first = buf.pop_windows(1)[0]
    later = []
    for i in range(3, 12):  # wraps the 5-slot ring twice; windows 4..6 and 7..9 straddle the seam
        buf.push(ramp(i, 1)[0][0], i / 10)
        later += buf.pop_windows(5)
    np.testing.assert_array_equal(first.data[:, 0], [0, 1, 2])
    assert [w.data[:, 0].tolist() for w in later] == [[3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert all(w.data.flags.c_contiguous for w in later)
    assert buf.stats.dropped == 0


def test_drop_oldest_skips_whole_hops_and_marks_the_gap() -> None:
    buf = StreamBuffer("imu", 2, 8, window_length=4, hop=2, policy="drop_oldest")
    data, ts = ramp(0, 12)
    assert buf.push_block(data, ts) == 12  # 4 samples past capacity: next window moves from 0 to 4
    windows = buf.pop_windows(10)
    assert [int(w.data[0, 0]) for w in windows] == [4, 6, 8]
    assert [w.gap_before for w in windows] == [True, False, False]
    stats = buf.stats
    assert (stats.pushed, stats.dropped, stats.refused, stats.covered) == (12, 4, 0, 8)
    assert stats.pushed == stats.covered + stats.dropped + stats.pending


def test_drop_oldest_overlap_already_delivered_is_not_counted_as_dropped() -> None:
    buf = StreamBuffer("imu", 1, 4, window_length=4, hop=1, policy="drop_oldest")
    buf.push_block(*ramp(0, 4, channels=1))
    assert starts(buf) == [0]  # samples 0..3 delivered; the next window starts at 1
    buf.push_block(*ramp(4, 2, channels=1))  # overwrites samples 1 and 2, already delivered
    assert buf.stats.dropped == 0
    windows = buf.pop_windows(5)
    assert [int(w.data[0, 0]) for w in windows] == [2]
    assert windows[0].gap_before is False


def test_drop_newest_refuses_and_restarts_windows_after_the_gap() -> None:
    buf = StreamBuffer("imu", 2, 6, window_length=4, hop=2, policy="drop_newest")
    data, ts = ramp(0, 8)
    assert buf.push_block(data, ts) == 6  # samples 6 and 7 refused
    assert not buf.push(ramp(8, 1)[0][0], 0.8)  # still full: refused
    windows = buf.pop_windows(10)
    assert [int(w.data[0, 0]) for w in windows] == [0, 2]
    # the window 4..7 would straddle the gap: the grid restarts at the next accepted sample, 9
    data, ts = ramp(9, 5)
    assert buf.push_block(data, ts) == 5
    windows = buf.pop_windows(10)
    assert [int(w.data[0, 0]) for w in windows] == [9]
    assert windows[0].gap_before is True
    stats = buf.stats
    assert stats.refused == 3
    assert stats.dropped == 3  # samples 4 and 5 were delivered in window 2..5
    assert stats.pushed == 14 == stats.covered + stats.dropped + stats.pending


def test_drop_newest_counts_accepted_samples_cut_off_by_a_gap() -> None:
    buf = StreamBuffer("imu", 1, 6, window_length=4, hop=4, policy="drop_newest")
    assert buf.push_block(*ramp(0, 8, channels=1)) == 6  # 6 and 7 refused
    assert starts(buf) == [0]
    assert buf.push_block(*ramp(8, 4, channels=1)) == 4
    assert starts(buf) == [8]  # 4 and 5 could only have joined a window across the gap
    stats = buf.stats
    assert (stats.refused, stats.dropped, stats.covered, stats.pending) == (2, 4, 8, 0)


def test_block_policy_with_timeout_counts_the_refused_samples() -> None:
    buf = StreamBuffer("imu", 2, 4, window_length=4, hop=4, policy="block", block_timeout=0.01)
    data, ts = ramp(0, 6)
    assert buf.push_block(data, ts) == 4
    assert buf.stats.refused == 2


def test_block_policy_waits_for_the_consumer() -> None:
    buf = StreamBuffer("imu", 2, 4, window_length=2, hop=2, policy="block")
    data, ts = ramp(0, 40)
    result: list[int] = []
    producer = threading.Thread(target=lambda: result.append(buf.push_block(data, ts)))
    producer.start()
    seen: list[int] = []
    while len(seen) < 20:
        seen += starts(buf)
    producer.join(timeout=30)
    assert result == [40]
    assert seen == list(range(0, 40, 2))
    assert buf.stats.dropped == 0


def test_close_releases_a_blocked_producer() -> None:
    buf = StreamBuffer("imu", 2, 4, window_length=2, hop=2, policy="block")
    data, ts = ramp(0, 10)
    result: list[int] = []
    producer = threading.Thread(target=lambda: result.append(buf.push_block(data, ts)))
    producer.start()
    buf.close()
    producer.join(timeout=30)
    assert not producer.is_alive()
    assert result[0] <= 4
    assert buf.stats.refused == 10 - result[0]
    assert buf.closed
    assert not buf.push([0.0, 0.0], 1.0)


def test_notify_condition_is_signalled_once_per_ready_window() -> None:
    calls: list[int] = []
    buf = StreamBuffer("imu", 2, 32, window_length=4, hop=2)
    buf.notify = lambda: calls.append(buf.stats.pushed)
    for i in range(10):
        buf.push(ramp(i, 1)[0][0], i)
    assert calls == [4, 6, 8, 10]
    buf.push_block(*ramp(10, 7))  # completes windows ending at 12, 14, 16: one signal for the block
    assert calls == [4, 6, 8, 10, 17]


def test_notify_accepts_a_condition_and_rejects_other_objects() -> None:
    cond = threading.Condition()
    buf = StreamBuffer("imu", 2, 32, window_length=2, hop=2, notify=cond)
    woke: list[bool] = []

    def consumer() -> None:
        with cond:
            woke.append(cond.wait_for(lambda: buf.windows_ready() > 0, timeout=30))

    thread = threading.Thread(target=consumer)
    thread.start()
    buf.push_block(*ramp(0, 2))
    thread.join(timeout=30)
    assert woke == [True]
    with pytest.raises(TypeError, match="notify"):
        buf.notify = 42  # type: ignore[assignment]


def test_pop_windows_respects_max_and_zero() -> None:
    buf = StreamBuffer("imu", 2, 32, window_length=2, hop=1)
    buf.push_block(*ramp(0, 10))
    assert buf.windows_ready() == 9
    assert buf.pop_windows(0) == []
    assert len(buf.pop_windows(3)) == 3
    assert len(buf.pop_windows(100)) == 6
    stats = buf.stats
    assert (stats.windows_emitted, stats.fill, stats.capacity, stats.pending) == (9, 1, 32, 0)


def test_one_producer_per_stream_and_one_consumer_lose_nothing_unaccounted() -> None:
    """Real threads, all three policies; asserts only on content and counters, never on timing."""
    buffers = [
        StreamBuffer(f"s{k}", 2, 16, window_length=4, hop=2, policy=policy)
        for k, policy in enumerate(POLICIES)
    ]
    total = 3000
    rng = np.random.default_rng(1)

    def produce(buf: StreamBuffer) -> None:
        i = 0
        while i < total:
            n = int(rng.integers(1, 12))
            n = min(n, total - i)
            if n == 1:
                buf.push(ramp(i, 1)[0][0], i / 10)
            else:
                buf.push_block(*ramp(i, n))
            i += n

    producers = [threading.Thread(target=produce, args=(b,)) for b in buffers]
    for p in producers:
        p.start()
    got: dict[str, list[np.ndarray]] = {b.name: [] for b in buffers}
    while any(p.is_alive() for p in producers):
        for b in buffers:
            got[b.name] += [w.data for w in b.pop_windows(3)]
    for p in producers:
        p.join()
    for b in buffers:
        got[b.name] += [w.data for w in b.pop_windows(10_000)]
        firsts = [int(d[0, 0]) for d in got[b.name]]
        assert firsts == sorted(set(firsts))
        for d in got[b.name]:
            np.testing.assert_array_equal(d[:, 0], np.arange(d[0, 0], d[0, 0] + 4))
        covered = {int(v) for d in got[b.name] for v in d[:, 0]}
        stats = b.stats
        assert stats.pushed == total
        assert stats.covered == len(covered)
        assert stats.pushed == stats.covered + stats.dropped + stats.pending
        assert stats.pending < 4
    assert buffers[2].stats.dropped == 0  # block never drops without a timeout


class _CountingCondition(threading.Condition):
    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.notifies = 0

    def notify(self, n: int = 1) -> None:
        self.notifies += 1
        super().notify(n)


@pytest.mark.parametrize(("capacity", "length", "hop"), [(100, 10, 10), (10, 8, 1), (64, 5, 3)])
def test_blocked_producer_is_woken_once_per_refill_not_per_pop(capacity: int, length: int, hop: int) -> None:
    # The consumer pops one window at a time; the producer must still get every sample in, and
    # be woken about once per ``capacity - window_length + 1`` (or half the ring) of room, not
    # once per pop: each wake-up costs the consumer a GIL hand-over.
    buf = StreamBuffer("imu", 2, capacity, window_length=length, hop=hop, policy="block")
    space = _CountingCondition(buf._lock)  # white-box: count the consumer's wake-ups
    buf._space = space
    total = 2000
    data, ts = ramp(0, total)
    result: list[int] = []
    producer = threading.Thread(target=lambda: result.append(buf.push_block(data, ts)))
    producer.start()
    seen: list[int] = []
    while producer.is_alive() or buf.windows_ready():
        seen += starts(buf, 1)
    producer.join(timeout=30)
    assert result == [total]
    assert seen == list(range(0, total - length + 1, hop))
    assert buf.stats.dropped == 0
    refill = min(capacity - length + 1, max(1, capacity // 2))
    assert space.notifies <= total // refill + 2
