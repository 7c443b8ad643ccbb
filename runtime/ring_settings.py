"""Checking a :class:`~edgefleet.runtime.ringbuffer.StreamBuffer`'s settings: every bad one listed."""

from __future__ import annotations

from typing import get_args

from edgefleet.errors import ConfigError, ConfigIssue
from edgefleet.types import BackpressurePolicy

__all__ = ["validate_ring_settings"]

_POLICIES: tuple[str, ...] = get_args(BackpressurePolicy)


def validate_ring_settings(
    name: object,
    channels: object,
    capacity: object,
    window_length: object,
    hop: object,
    policy: object,
    block_timeout: object,
) -> None:
    issues: list[ConfigIssue] = []

    def positive_int(key: str, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            issues.append(ConfigIssue(key, value, "an integer >= 1"))
            return False
        return True

    if not isinstance(name, str) or not name:
        issues.append(ConfigIssue("name", name, "a non-empty stream name"))
    positive_int("channels", channels)
    ok_len = positive_int("window_length", window_length)
    if positive_int("hop", hop) and ok_len and hop > window_length:  # type: ignore[operator]
        issues.append(ConfigIssue("hop", hop, f"<= window_length ({window_length}); a larger hop drops data"))
    if positive_int("capacity", capacity) and ok_len and capacity < window_length:  # type: ignore[operator]
        issues.append(ConfigIssue("capacity", capacity, f">= window_length ({window_length})"))
    if policy not in _POLICIES:
        issues.append(ConfigIssue("policy", policy, " | ".join(_POLICIES)))
    if block_timeout is not None and (
        isinstance(block_timeout, bool) or not isinstance(block_timeout, int | float) or block_timeout < 0
    ):
        issues.append(ConfigIssue("block_timeout", block_timeout, "None or seconds >= 0"))
    if issues:
        raise ConfigError(
            f"invalid ring buffer settings for stream {name!r}",
            issues=issues,
            hint="fix the stream's batching settings (window_length, hop, capacity, policy)",
        )
