"""collate(): the pure batching policy (size trigger, timeout trigger, boundaries)."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.runtime.batcher import collate
from edgefleet.runtime.ringbuffer import Window

pytestmark = pytest.mark.unit


def window(ready_at: float, seq: int = 0, stream: str = "s") -> Window:
    data = np.zeros((2, 1), dtype=np.float32)
    return Window(stream=stream, seq=seq, start_ts=0.0, end_ts=0.0, data=data, ready_at=ready_at)


def pending_at(*ready: float) -> list[Window]:
    return [window(r, seq=i) for i, r in enumerate(ready)]


@pytest.mark.parametrize(
    ("ready", "now", "max_batch_size", "timeout", "batch_seqs"),
    [
        # nothing pending
        ((), 10.0, 4, 0.1, []),
        # below size, not yet due
        ((1.0, 1.05), 1.09, 4, 0.1, []),
        # exactly at the timeout: due (>=)
        ((1.0, 1.05), 1.1, 4, 0.1, [0, 1]),
        # past the timeout: everything pending goes
        ((1.0, 1.05, 1.08), 5.0, 4, 0.1, [0, 1, 2]),
        # exactly max_batch_size: released at once, no waiting
        ((1.0, 1.01, 1.02, 1.03), 1.03, 4, 10.0, [0, 1, 2, 3]),
        # more than max: the max oldest, by ready_at, not by list position
        ((1.3, 1.0, 1.2, 1.1, 1.4), 1.4, 3, 10.0, [1, 2, 3]),
        # max_batch_size 1 releases every window immediately, one at a time
        ((2.0, 1.0), 2.0, 1, 10.0, [1]),
        # zero timeout releases whatever is pending
        ((5.0,), 5.0, 8, 0.0, [0]),
        # timeout due and more than max pending: still only max
        ((1.0, 1.1, 1.2), 9.0, 2, 0.5, [0, 1]),
        # clock behind ready_at (another clock source): not due
        ((3.0,), 2.0, 4, 0.1, []),
    ],
)
def test_collate(
    ready: tuple[float, ...], now: float, max_batch_size: int, timeout: float, batch_seqs: list[int]
) -> None:
    pending = pending_at(*ready)
    batch, rest = collate(pending, now=now, max_batch_size=max_batch_size, batch_timeout=timeout)
    assert [w.seq for w in batch] == batch_seqs
    # nothing lost or duplicated, relative order kept in both parts
    assert sorted(w.seq for w in batch + rest) == list(range(len(ready)))
    assert [w.seq for w in rest] == sorted(w.seq for w in rest)
    assert [w.seq for w in batch] == sorted(w.seq for w in batch)
    assert len(batch) <= max_batch_size


def test_collate_is_pure() -> None:
    pending = pending_at(1.0, 2.0, 3.0)
    before = list(pending)
    first = collate(pending, now=1.5, max_batch_size=2, batch_timeout=0.1)
    second = collate(pending, now=1.5, max_batch_size=2, batch_timeout=0.1)
    assert pending == before
    assert [w.seq for w in first[0]] == [w.seq for w in second[0]] == [0, 1]
    assert first[1] is not pending


@pytest.mark.parametrize("size", [0, -1])
def test_collate_rejects_a_non_positive_batch_size(size: int) -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        collate(pending_at(1.0), now=1.0, max_batch_size=size, batch_timeout=0.1)
