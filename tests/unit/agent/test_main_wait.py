"""The main loop's wait ends at once on a signal or a request from another thread."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from edgefleet.agent.main_wait import MainWait


def _returns(wait: MainWait, timeout: float) -> bool:
    """True when ``wait.wait(timeout)`` returned within 30 s (the wake-up worked)."""
    thread = threading.Thread(target=wait.wait, args=(timeout,), daemon=True)
    thread.start()
    thread.join(30)
    return not thread.is_alive()


def test_a_wake_from_another_thread_ends_the_wait_and_is_consumed() -> None:
    wait = MainWait()
    try:
        wait.wake()
        wait.wake()
        assert _returns(wait, 3600)  # both wake-ups pending: returns at once and drains them
        thread = threading.Thread(target=wait.wait, args=(3600,), daemon=True)
        thread.start()
        wait.wake()
        thread.join(30)
        assert not thread.is_alive()
        assert _returns(wait, 0.0)
    finally:
        wait.close()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_a_signal_ends_the_wait_and_the_previous_wakeup_fd_comes_back() -> None:
    before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before)
    received: list[int] = []
    old_handler = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    wait = MainWait()
    try:
        wait.wake_on_signals()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert _returns(wait, 3600)  # the signal's byte is waiting: returns at once
        assert received == [signal.SIGUSR1]
    finally:
        wait.close()
        signal.signal(signal.SIGUSR1, old_handler)
    assert signal.set_wakeup_fd(before) == before
