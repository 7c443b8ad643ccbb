"""The login throttle's pure logic, on a fake clock."""

from __future__ import annotations

import pytest

from edgefleet.controller.login_throttle import LoginThrottle, LoginThrottleConfig, LoginThrottledError

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(**overrides: object) -> tuple[LoginThrottle, Clock]:
    clock = Clock()
    return LoginThrottle(LoginThrottleConfig.model_validate(overrides), clock=clock), clock


def locked_for(t: LoginThrottle, user: str, source: str) -> float | None:
    try:
        t.begin(user, source)
    except LoginThrottledError as exc:
        return exc.retry_after_s
    return None


def test_back_off_doubles_per_user_after_the_free_failures() -> None:
    t, clock = throttle(free_failures=3, base_lockout_s=1.0, max_lockout_s=8.0)
    for _ in range(3):
        assert locked_for(t, "ops", "10.0.0.1") is None
    waits: list[float | None] = []
    for _ in range(6):
        # Each attempt (from ever new addresses) waits out the lock, then fails again.
        clock.now += 100
        t.begin("ops", f"10.0.1.{len(waits)}")
        waits.append(locked_for(t, "ops", "10.9.9.9"))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_attempts_count_before_the_password_is_checked() -> None:
    # Parallel guesses: every begin() counts at once, so the sixth is refused even though
    # none of the first five has finished (and so none has been reported as failed).
    t, _ = throttle(free_failures=5)
    for _ in range(5):
        t.begin("ops", "10.0.0.1")
    assert locked_for(t, "ops", "10.0.0.1") == 1.0


def test_a_success_clears_the_user_and_does_not_count_against_the_source() -> None:
    t, _ = throttle(free_failures=2, source_free_failures=3)
    t.begin("ops", "10.0.0.1")
    t.begin("ops", "10.0.0.1")
    t.succeeded("ops", "10.0.0.1")
    assert t.failures("ops") == 0
    for _ in range(50):  # a busy address (NAT, proxy) logging in successfully never locks itself
        t.begin("alice", "10.0.0.1")
        t.succeeded("alice", "10.0.0.1")
    t.begin("bob", "10.0.0.1")
    t.begin("carol", "10.0.0.1")  # the source's third failure: at its free limit
    assert locked_for(t, "dave", "10.0.0.1") is not None  # now locked for any user
    assert locked_for(t, "dave", "10.0.0.2") is None


def test_unknown_and_known_users_are_throttled_alike() -> None:
    t, _ = throttle(free_failures=2)
    for user in ("admin", "no-such-user"):
        t.begin(user, "a")
        t.begin(user, "b")
        assert locked_for(t, user, "c") == 1.0


def test_failures_are_forgotten_after_a_quiet_period() -> None:
    t, clock = throttle(free_failures=1, forget_after_s=60)
    t.begin("ops", "a")
    clock.now += 0.5
    assert locked_for(t, "ops", "b") is not None
    clock.now += 61
    assert locked_for(t, "ops", "c") is None


def test_the_table_is_bounded() -> None:
    t, _ = throttle(max_tracked=100)
    for i in range(1000):
        t.begin(f"user-{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(t._entries) == 100


def test_hashing_slots_are_limited() -> None:
    t, _ = throttle(max_concurrent_checks=2)
    assert t.hashing_slot()
    assert t.hashing_slot()
    assert not t.hashing_slot()
    t.release_slot()
    assert t.hashing_slot()


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="free_failure"):
        LoginThrottleConfig.model_validate({"free_failure": 3})
