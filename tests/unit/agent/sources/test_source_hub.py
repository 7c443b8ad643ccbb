"""The source hub: hook order, restart after a failing hook, finishing, stopping, one thread for all."""

from __future__ import annotations

import threading
import time
from typing import Literal

import numpy as np
import numpy.typing as npt
import pytest

from edgefleet.agent.sources import BaseSourceConfig, Sink
from edgefleet.agent.sources.hub import HubSource, SourceHub
from edgefleet.types import FloatArray
from tests.support.waiting import wait_until

pytestmark = pytest.mark.unit


class TickConfig(BaseSourceConfig):
    type: Literal["tick"] = "tick"


class TickSource(HubSource[TickConfig]):
    """Emits one sample per turn, ``every`` seconds, until ``total``; ``fail_opens`` opens raise first."""

    type_key = "tick"
    config_model = TickConfig

    def __init__(self, name: str, sink: Sink, *, every: float = 0.01, total: int | None = None) -> None:
        super().__init__(TickConfig(name=name, restart_delay_s=0.05), sink)
        self.every = every
        self.total = total
        self.fail_opens = 0
        self.events: list[str] = []
        self.threads: set[str] = set()
        self.emitted = 0

    @property
    def channels(self) -> int:
        return 2

    def _open(self, hub: SourceHub, now: float) -> float | None:
        self.threads.add(threading.current_thread().name)
        self.events.append("open")
        if self.fail_opens:
            self.fail_opens -= 1
            raise OSError("sensor not there yet")
        return now

    def _turn(self, now: float) -> float | None:
        self.threads.add(threading.current_thread().name)
        if self.total is not None and self.emitted >= self.total:
            self._mark_finished()
            return None
        self._emit(np.array([[1.0, 2.0]], np.float32), np.array([time.time()]))
        self.emitted += 1
        return now + self.every

    def _shutdown(self) -> None:
        self.events.append("shutdown")


class CountingSink:
    def __init__(self) -> None:
        self.rows = 0
        self.lock = threading.Lock()

    def __call__(self, samples: FloatArray, timestamps: npt.NDArray[np.float64]) -> None:
        with self.lock:
            self.rows += len(samples)


def test_sources_on_one_hub_share_its_single_thread() -> None:
    hub = SourceHub(name="test-hub", tick_s=0.01)
    sinks = [CountingSink() for _ in range(4)]
    sources = [TickSource(f"s{i}", sink) for i, sink in enumerate(sinks)]
    for source in sources:
        source.start(hub)
    try:
        wait_until(lambda: all(sink.rows >= 5 for sink in sinks))
        assert all(source.running for source in sources)
    finally:
        for source in sources:
            source.stop()
    assert {name for source in sources for name in source.threads} == {"test-hub"}
    # no thread per source (the process-wide hub, "source-io", may exist from other tests)
    assert {t.name for t in threading.enumerate() if t.name.startswith("source-")} <= {"source-io"}
    for source in sources:
        assert source.events == ["open", "shutdown"]
        assert not source.running


def test_paced_sources_due_together_share_a_wake_up() -> None:
    hub = SourceHub(name="test-grid", tick_s=0.05)
    sources = [TickSource(f"g{i}", CountingSink(), every=0.001) for i in range(16)]
    for source in sources:
        source.start(hub)
    wait_until(lambda: all(source.emitted for source in sources))
    wakeups0, turns0 = hub.wakeups, sum(source.emitted for source in sources)
    time.sleep(0.5)
    wakeups, turns = hub.wakeups - wakeups0, sum(source.emitted for source in sources) - turns0
    for source in sources:
        source.stop()
    # each source asks for a turn every millisecond; the grid gives all sixteen one per tick
    assert turns >= 16
    assert wakeups <= turns / 8


def test_turns_due_on_one_grid_line_run_in_the_order_asked_each_pass() -> None:
    hub = SourceHub(name="test-order", tick_s=0.05)
    order: list[str] = []

    def recorder(name: str) -> Sink:
        return lambda samples, timestamps: order.append(name)

    sources = [TickSource(f"o{i}", recorder(f"o{i}"), every=0.001) for i in range(5)]
    for source in sources:
        source.start(hub)
    wait_until(lambda: len(order) >= 40, what="eight passes")
    for source in sources:
        source.stop()
    names = [source.name for source in sources]
    passes = [order[i : i + 5] for i in range(0, 40, 5)]
    # every pass turns all five (each asks for the next millisecond: all land on the next line),
    # always in the order they first asked
    assert passes == [names] * 8


def test_a_failing_open_is_recorded_and_retried() -> None:
    hub = SourceHub(name="test-retry", tick_s=0.01)
    sink = CountingSink()
    source = TickSource("flaky", sink)
    source.fail_opens = 2
    source.start(hub)
    try:
        wait_until(lambda: sink.rows >= 1)
    finally:
        source.stop()
    assert source.events[:5] == ["open", "shutdown", "open", "shutdown", "open"]
    assert "sensor not there yet" in (source.stats.last_error or "")
    assert "restarting in 0.05s" in (source.stats.last_error or "")


def test_a_finite_source_finishes_and_stops_running() -> None:
    hub = SourceHub(name="test-finish", tick_s=0.01)
    sink = CountingSink()
    source = TickSource("finite", sink, total=3)
    source.start(hub)
    assert source.wait_finished(10)
    wait_until(lambda: not source.running)
    assert sink.rows == 3
    assert source.events == ["open", "shutdown"]
    source.stop()  # stopping a finished source is harmless
    assert source.events == ["open", "shutdown"]


def test_a_source_stopped_from_its_own_sink_does_not_deadlock() -> None:
    hub = SourceHub(name="test-self-stop", tick_s=0.01)
    holder: list[TickSource] = []
    stopped = threading.Event()

    def sink(samples: FloatArray, timestamps: npt.NDArray[np.float64]) -> None:
        holder[0].stop()  # runs on the hub thread
        stopped.set()

    source = TickSource("self-stop", sink)
    holder.append(source)
    source.start(hub)
    assert stopped.wait(10)
    assert not source.running
    assert source.events == ["open", "shutdown"]


def test_restart_after_stop_resumes_on_the_hub() -> None:
    hub = SourceHub(name="test-restart", tick_s=0.01)
    sink = CountingSink()
    source = TickSource("again", sink)
    source.start(hub)
    wait_until(lambda: sink.rows >= 2)
    source.stop()
    rows = sink.rows
    source.start(hub)
    wait_until(lambda: sink.rows >= rows + 2)
    source.stop()
    assert source.events == ["open", "shutdown", "open", "shutdown"]


def test_tick_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tick_s must be > 0"):
        SourceHub(tick_s=0)


def test_pass_hooks_bracket_every_pass_that_hands_samples_over() -> None:
    hub = SourceHub(name="test-hooks", tick_s=0.01)
    log: list[str] = []
    inside: list[bool] = []
    state = {"in_pass": False}

    def before() -> None:
        log.append("before")
        state["in_pass"] = True

    def after() -> None:
        log.append("after")
        state["in_pass"] = False

    def sink(samples: FloatArray, timestamps: npt.NDArray[np.float64]) -> None:
        inside.append(state["in_pass"])

    hub.add_pass_hooks(before, after)
    source = TickSource("h", sink, total=5)
    source.start(hub)
    try:
        assert source.wait_finished(10)
    finally:
        source.stop()
    assert len(inside) == 5
    assert all(inside)  # every hand-over happened between a before and its after
    assert log[::2] == ["before"] * (len(log) // 2)
    assert log[1::2] == ["after"] * (len(log) // 2)
    hub.remove_pass_hooks(before, after)
    calls = len(log)
    again = TickSource("h2", sink, total=3)
    again.start(hub)
    try:
        assert again.wait_finished(10)
    finally:
        again.stop()
    assert len(log) == calls  # removed: not called any more
