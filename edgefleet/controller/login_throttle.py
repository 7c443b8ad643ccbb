"""Login throttling: per user name and per source address, with exponential back-off.

Every password check costs a 16 MiB scrypt, so an unthrottled login route is both a guessing
oracle and a memory/CPU amplifier. The throttle therefore decides BEFORE any hashing:

* Each attempt is counted as a failure when it starts (so 200 parallel guesses cannot all slip
  in before the first one fails); a success clears its user name's count and is taken back from
  its address's count (only failures count there).
* From its ``free_failures``-th failure (per user; ``source_free_failures`` per address) a key is
  locked for ``base_lockout_s``, doubling with each further failure up to ``max_lockout_s``;
  attempts while locked are refused with 429 and Retry-After, without touching the password.
  Counts are forgotten after ``forget_after_s`` without a failure.
* At most ``max_concurrent_checks`` password hashes run at once; more get 429 at once.
* Unknown user names are throttled exactly like real ones, so the throttle reveals nothing about
  which accounts exist, and ``auth.login`` keeps its unknown-user / wrong-password timing equality.

Failures are logged (user name, source, count; never the password). The table of keys is bounded
(``max_tracked``): the oldest entries go first, so spraying user names cannot exhaust memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from edgefleet.errors import EdgefleetError

if TYPE_CHECKING:  # auth imports the controller config, which imports this module's config
    from edgefleet.controller.auth import Principal
    from edgefleet.controller.dal import Database

__all__ = ["LoginThrottle", "LoginThrottleConfig", "LoginThrottledError", "throttled_login"]

log = logging.getLogger(__name__)


class LoginThrottleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    free_failures: int = Field(default=5, ge=1, description="failures per user name before back-off")
    source_free_failures: int = Field(default=20, ge=1, description="failures per address before back-off")
    base_lockout_s: float = Field(default=1.0, gt=0)
    max_lockout_s: float = Field(default=900.0, gt=0)
    forget_after_s: float = Field(default=3600.0, gt=0, description="forget a key's failures after this")
    max_concurrent_checks: int = Field(default=4, ge=1, description="password hashes running at once")
    max_tracked: int = Field(default=50_000, ge=100, description="user names + addresses remembered")


class LoginThrottledError(EdgefleetError):
    """Refused before the password was checked; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, hint=f"wait {retry_after_s:.0f} s and try again")
        self.retry_after_s = retry_after_s


@dataclass
class _Entry:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    def __init__(self, config: LoginThrottleConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._hashing = threading.BoundedSemaphore(config.max_concurrent_checks)

    def _entry(self, key: str, now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None or now - entry.last_failure > self.config.forget_after_s:
            entry = _Entry()
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.config.max_tracked:
            self._entries.popitem(last=False)
        return entry

    def _lockout(self, failures: int, free: int) -> float:
        excess = failures - free  # the free-th failure locks for base_lockout_s, each further one doubles it
        if excess < 0:
            return 0.0
        return float(min(self.config.max_lockout_s, self.config.base_lockout_s * 2 ** min(excess, 40)))

    def begin(self, username: str, source: str) -> None:
        """Count an attempt, or raise :class:`LoginThrottledError` if its user or source is locked."""
        now = self.clock()
        keys = (
            (f"user:{username}", self.config.free_failures),
            (f"source:{source}", self.config.source_free_failures),
        )
        with self._lock:
            entries = [(self._entry(key, now), free) for key, free in keys]
            wait = max(entry.locked_until - now for entry, _ in entries)
            if wait > 0:
                log.warning("login throttled for user %r from %s (retry in %.0f s)", username, source, wait)
                raise LoginThrottledError(
                    "too many failed logins for this user name or from this address",
                    retry_after_s=max(1.0, wait),
                )
            for entry, free in entries:
                entry.failures += 1
                entry.last_failure = now
                entry.locked_until = now + self._lockout(entry.failures, free)

    def succeeded(self, username: str, source: str) -> None:
        """Clear the user's count; take back the attempt counted against the source (only failures
        count there, or every busy address, a NAT or a proxy, would lock itself out)."""
        with self._lock:
            self._entries.pop(f"user:{username}", None)
            entry = self._entries.get(f"source:{source}")
            if entry is not None:
                entry.failures = max(0, entry.failures - 1)
                if entry.failures < self.config.source_free_failures:
                    entry.locked_until = 0.0

    def failures(self, username: str) -> int:
        with self._lock:
            entry = self._entries.get(f"user:{username}")
            return entry.failures if entry else 0

    def hashing_slot(self) -> bool:
        return self._hashing.acquire(blocking=False)

    def release_slot(self) -> None:
        self._hashing.release()


def throttled_login(
    throttle: LoginThrottle, database: Database, username: str, password: str, *, source: str, ttl_s: int
) -> tuple[str, Principal]:
    """``auth.login`` behind the throttle: the throttle decides before the password is hashed."""
    from edgefleet.controller.auth import login

    if not throttle.config.enabled:
        return login(database, username, password, ttl_s=ttl_s)
    throttle.begin(username, source)
    if not throttle.hashing_slot():
        log.warning("login refused for user %r from %s: too many logins in progress", username, source)
        raise LoginThrottledError("too many logins are being checked right now", retry_after_s=1.0)
    try:
        result = login(database, username, password, ttl_s=ttl_s)
    except EdgefleetError:
        log.warning(
            "login failed for user %r from %s (%d recent failures)",
            username,
            source,
            throttle.failures(username),
        )
        raise
    finally:
        throttle.release_slot()
    throttle.succeeded(username, source)
    return result
