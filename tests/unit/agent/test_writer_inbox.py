"""The writer's hand-over queue wakes the writer only when it wants the items now."""

from __future__ import annotations

import queue
import threading

import pytest

from edgefleet.agent.writer import _STOP, _Inbox


def _waiting(inbox: _Inbox, want: int) -> None:
    """Put ``inbox`` in the state of a writer waiting for ``want`` results (no thread needed)."""
    inbox._want = want
    inbox._writer_waiting = True


def _is_waiting(inbox: _Inbox) -> bool:
    """False once a put has notified the writer."""
    return inbox._writer_waiting


def test_items_come_out_in_order_and_an_empty_inbox_says_so() -> None:
    inbox = _Inbox(8)
    for i in range(3):
        inbox.put(f"item {i}", 1)
    assert [inbox.get_nowait() for _ in range(3)] == ["item 0", "item 1", "item 2"]
    assert inbox.empty()
    with pytest.raises(queue.Empty):
        inbox.get_nowait()
    with pytest.raises(queue.Empty):
        inbox.get(0.0, want=1)


def test_a_writer_with_nothing_pending_is_woken_by_the_first_item() -> None:
    inbox = _Inbox(8)
    _waiting(inbox, 1)
    inbox.put("first", 16)
    assert not _is_waiting(inbox)  # notified


def test_items_below_what_the_writer_waits_for_do_not_wake_it() -> None:
    inbox = _Inbox(32)
    _waiting(inbox, 100)
    for _ in range(6):
        inbox.put("batch", 16)  # 96 results queued: not yet a full transaction
    assert _is_waiting(inbox)
    inbox.put("batch", 16)  # 112 >= 100
    assert not _is_waiting(inbox)


def test_a_half_full_queue_and_stop_always_wake_the_writer() -> None:
    inbox = _Inbox(4)
    _waiting(inbox, 10_000)
    inbox.put("a", 1)
    assert _is_waiting(inbox)
    inbox.put("b", 1)  # 2 of 4: half full, a producer must never wait for a sleeping writer
    assert not _is_waiting(inbox)
    inbox = _Inbox(32)
    _waiting(inbox, 10_000)
    inbox.put(_STOP, 0)
    assert not _is_waiting(inbox)


def test_a_waiting_writer_thread_gets_the_item_that_fills_its_want() -> None:
    inbox = _Inbox(32)
    got: list[object] = []
    started = threading.Event()

    def writer() -> None:
        started.set()
        got.append(inbox.get(60.0, want=1))

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(10)
    inbox.put("result", 1)
    thread.join(60)
    assert got == ["result"]


def test_a_full_inbox_blocks_the_producer_until_the_writer_takes_one() -> None:
    inbox = _Inbox(2)
    inbox.put("a", 1)
    inbox.put("b", 1)
    with pytest.raises(queue.Full):
        inbox.put("c", 1, timeout=0.01)
    done = threading.Event()

    def producer() -> None:
        inbox.put("c", 1)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert inbox.get_nowait() == "a"
    assert done.wait(60)
    thread.join(60)
    assert [inbox.get_nowait(), inbox.get_nowait()] == ["b", "c"]
    assert inbox._results == 0
