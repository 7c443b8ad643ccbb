"""The fallback budget's sliding windows, on a hand-driven clock (pure logic)."""

from __future__ import annotations

import pytest

from edgefleet.agent.fallback_budget import FallbackBudget, SlidingCount

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_refuse_past_the_limit_and_free_up_a_minute_later() -> None:
    clock = Clock()
    budget = FallbackBudget(max_requests_per_min=3, clock=clock)
    assert [budget.spend(100) for _ in range(4)] == [True, True, True, False]
    assert budget.refused == 1
    clock.now += 30
    assert not budget.spend(100)  # still inside the minute
    clock.now += 31
    assert budget.spend(100)  # the first three have left the window
    assert budget.usage() == (1, 400)
    assert budget.refused == 2


def test_bytes_per_hour_count_request_sizes() -> None:
    clock = Clock()
    budget = FallbackBudget(max_bytes_per_hour=1000, clock=clock)
    assert budget.spend(600)
    assert not budget.spend(500)  # 1,100 would be over
    assert budget.spend(400)  # exactly 1,000
    clock.now += 1800
    assert not budget.spend(1)
    assert budget.usage() == (0, 1000)  # a minute later none of them counts as a recent request
    clock.now += 1860
    assert budget.spend(1000)


def test_a_refused_request_spends_nothing() -> None:
    clock = Clock()
    budget = FallbackBudget(max_requests_per_min=10, max_bytes_per_hour=100, clock=clock)
    assert not budget.spend(101)
    assert budget.usage() == (0, 0)
    assert budget.spend(100)


def test_without_limits_everything_passes_and_is_still_counted() -> None:
    budget = FallbackBudget(clock=Clock())
    assert all(budget.spend(10) for _ in range(1000))
    assert budget.usage() == (1000, 10_000)
    assert budget.refused == 0


def test_buckets_are_reused_without_leaking_old_counts() -> None:
    count = SlidingCount(60.0)
    count.add(0.5, 5)
    count.add(59.5, 1)
    assert count.total(59.9) == 6
    assert count.total(60.5) == 1  # the first bucket's span has passed
    count.add(60.2, 2)  # same slot as t=0.5, a new minute: starts from zero
    assert count.total(60.5) == 3
    assert count.total(10_000.0) == 0
