"""The fallback seam's offer(): what is kept for the edge, what the router takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.routing import offer
from edgefleet.agent.store import ResultRecord
from edgefleet.runtime.bundle import Prediction
from edgefleet.runtime.ringbuffer import Window

pytestmark = pytest.mark.unit


def _window(seq: int) -> Window:
    return Window("imu", seq, float(seq), seq + 1.0, np.zeros((2, 1), np.float32), 0.0)


def _record(seq: int) -> ResultRecord:
    return ResultRecord("imu", float(seq), seq + 1.0, "m", "1.0.0", "a", 0.5, None, 1.0, window_seq=seq)


class Router:
    def __init__(self, reasons: list[str | None], *, fail_route: bool = False, fail_submit: bool = False):
        self.reasons = reasons
        self.fail_route = fail_route
        self.fail_submit = fail_submit
        self.taken: list[tuple[int, str, ResultRecord | None]] = []

    def route(self, windows: Sequence[Window], predictions: Sequence[Prediction] | None) -> list[str | None]:
        if self.fail_route:
            raise RuntimeError("router bug")
        return self.reasons

    def submit(self, window: Window, reason: str, edge_result: ResultRecord | None) -> None:
        if self.fail_submit:
            raise RuntimeError("queue full")
        self.taken.append((window.seq, reason, edge_result))


def test_claimed_windows_go_to_the_router_and_the_rest_stay() -> None:
    counters = PipelineCounters()
    router = Router([None, "low_confidence", None])
    windows = [_window(i) for i in range(3)]
    records = [_record(i) for i in range(3)]
    keep = offer(router, windows, [], records, counters)
    assert [r.window_seq for r in keep] == [0, 2]
    assert router.taken == [(1, "low_confidence", records[1])]
    assert counters.snapshot().windows_to_fallback == 1


@pytest.mark.parametrize("failure", ["fail_route", "fail_submit"])
def test_a_failing_router_never_costs_a_result(failure: str) -> None:
    counters = PipelineCounters()
    router = Router(["x", "x"], **{failure: True})
    keep = offer(router, [_window(0), _window(1)], [], [_record(0), _record(1)], counters)
    assert [r.window_seq for r in keep] == [0, 1]
    assert counters.snapshot().windows_to_fallback == 0


def test_without_edge_answers_unclaimed_windows_are_skipped() -> None:
    counters = PipelineCounters()
    router = Router(["model_unavailable", None])
    keep = offer(router, [_window(0), _window(1)], None, [None, None], counters)
    assert keep == []
    assert router.taken == [(0, "model_unavailable", None)]
    snap = counters.snapshot()
    assert snap.windows_to_fallback == 1
    assert snap.windows_skipped == 1


@pytest.mark.parametrize("reasons", [["cloud"], ["cloud", None, "cloud"], []])
def test_a_router_giving_another_number_of_reasons_keeps_every_edge_answer_and_is_counted(
    reasons: list[str | None],
) -> None:
    counters = PipelineCounters()
    router = Router(reasons)
    records = [_record(0), _record(1)]
    keep = offer(router, [_window(0), _window(1)], [], records, counters)
    assert keep == records  # no window silently dropped
    assert router.taken == []
    snapshot = counters.snapshot()
    assert (snapshot.router_mismatches, snapshot.windows_to_fallback) == (1, 0)
