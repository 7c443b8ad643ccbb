"""Waiting on what threads, processes and brokers do: poll a condition, with a cap.

The cap only keeps a test that would otherwise hang from hanging: it is generous, and no test
asserts a duration with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_until"]


# Returns Any: callers use the value as the truthy thing they waited for, which a type cannot say
# (``(s := read()) and s["ok"] and s`` types as ``Literal[False] | dict[str, Any] | None``).
def wait_until(
    condition: Callable[[], object],
    timeout: float = 60.0,
    *,
    interval: float = 0.05,
    what: str = "condition",
    fail: bool = True,
) -> Any:
    """Poll ``condition`` every ``interval`` seconds until it returns something truthy; return that.

    The condition is checked once more after ``timeout``. If it still does not hold, the test fails
    naming ``what``; with ``fail=False`` its falsy value is returned instead, for a caller that
    asserts with a diagnostic of its own, or that gives something ``timeout`` seconds not to happen.
    """
    deadline = time.monotonic() + timeout
    while True:
        late = time.monotonic() > deadline  # read before the check, so the last check is past the deadline
        value = condition()
        if value or late:
            break
        time.sleep(interval)
    if not value and fail:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    return value
