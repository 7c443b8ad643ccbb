"""Installing a new model bundle on a running agent: verify, validate, stage, swap, probation.

:meth:`OtaInstaller.install` is the one entry point (the MQTT downloader calls it with a complete
archive; ``edgefleet ota install`` reaches it through :mod:`edgefleet.agent.ota_local`). It runs
in its own thread and reports each step through ``report(state, progress, detail, metrics)``
(the ``ota/progress`` states):

1. ``received``; ``verifying``: the archive's signature against ``[ota] trusted_keys`` (before
   the manifest is parsed) and every file's sha256; the offered version and the downgrade rule.
   Anything wrong: ``refused``.
2. ``validating``: :func:`~edgefleet.agent.ota_validate.validate_in_subprocess` (own process,
   timeout): windows, tensors, canaries, latency. Anything wrong: ``failed``.
3. ``activating``: copy into the inactive slot, verify the copy, point at it (uncommitted),
   then :meth:`ModelSlot.swap` - the batch in flight finishes on the old model.
4. ``probation``: :class:`~edgefleet.agent.ota_probation.ProbationWatch`; passed: the pointer is
   committed, ``done``; regressed (or a ``rollback_model`` command): the previous model is swapped
   back and pointed at, ``rolled_back`` with the reason.

The running model is never touched before step 3, so every refusal leaves it serving.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgefleet.agent.config import OtaConfig
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.ota_probation import ProbationLimits, ProbationWatch, StoreReader
from edgefleet.agent.ota_slots import SlotStore
from edgefleet.agent.ota_validate import ValidationLimits, WindowShape, validate_in_subprocess
from edgefleet.errors import EdgefleetError
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_signing import TrustedKey, load_trusted_keys

__all__ = ["KILL_ENV", "AgentTarget", "LocalOffer", "Offer", "OtaInstaller", "Report", "kill_hook_from_env"]

log = logging.getLogger(__name__)

KILL_ENV = "EDGEFLEET_OTA_TEST_KILL_AT"
"""Test hook for the power-loss test: the agent SIGKILLs itself when the installer reaches the
named step (see :mod:`edgefleet.agent.ota_slots`). Unset in production."""


class Report(Protocol):
    def __call__(
        self,
        state: str,
        progress: float = 0.0,
        detail: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None: ...


class Offer(Protocol):
    """The fields of an ``ota/offer`` the installer reads (``OtaOfferBody`` has them)."""

    @property
    def offer_id(self) -> str: ...
    @property
    def bundle_version(self) -> str | None: ...
    @property
    def allow_downgrade(self) -> bool: ...


@dataclass(frozen=True)
class LocalOffer:
    """An install that did not come from the controller (``edgefleet ota install``)."""

    offer_id: str
    bundle_version: str | None = None
    allow_downgrade: bool = False


class AgentTarget(Protocol):
    """What the installer needs from the running agent."""

    def current_bundle(self) -> Bundle | None: ...
    def swap(self, bundle: Bundle) -> None: ...
    def configured_bundle(self) -> Bundle: ...


def kill_hook_from_env() -> Callable[[str], None] | None:
    step = os.environ.get(KILL_ENV)
    if not step:
        return None

    def hook(name: str) -> None:
        if name == step:
            log.warning("%s=%s: killing the agent here (power-loss test)", KILL_ENV, step)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?", version)
    if match is None:
        return ((0,), 0, version)
    core = tuple(int(match.group(i)) for i in (1, 2, 3))
    pre = match.group(4)
    return (core, 0 if pre else 1, pre or "")  # a pre-release sorts before its release


class OtaInstaller:
    """One device's installer: one install at a time; also the ``rollback_model`` command."""

    def __init__(
        self,
        *,
        config: OtaConfig,
        state_dir: Path,
        store_db: Path,
        counters: PipelineCounters,
        target: AgentTarget,
        load_kwargs: dict[str, Any] | None = None,
        hook: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.slots = SlotStore(state_dir / "models", hook=hook)
        self.counters = counters
        self.target = target
        self.store = StoreReader(store_db)
        self.load_kwargs = load_kwargs or {}
        self._hook = hook or (lambda step: None)
        self._busy = threading.Lock()
        self._probation: ProbationWatch | None = None
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_rollback_error: str | None = None

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "models" / "incoming"

    def trusted(self) -> list[TrustedKey]:
        return load_trusted_keys(self.config.trusted_keys) if self.config.trusted_keys else []

    def stop(self) -> None:
        """The agent is stopping: end a probation now (the pointer stays uncommitted)."""
        self._stop.set()

    # -- install --------------------------------------------------------------------------

    def install(self, archive: Path, offer: Offer, report: Report) -> threading.Thread:
        """Install ``archive`` in a new thread (returned, started); the outcome goes to ``report``."""
        thread = threading.Thread(
            target=self.install_now, args=(archive, offer, report), name="ota-install", daemon=True
        )
        self.thread = thread
        thread.start()
        return thread

    def install_now(self, archive: Path, offer: Offer, report: Report) -> str:
        """:meth:`install` in the calling thread; returns the final state."""
        report("received", 0.0, f"bundle {archive.name}")
        if not self._busy.acquire(blocking=False):
            return _end(
                report, "refused", "another install is in progress on this device; try again after it"
            )
        try:
            return self._install(archive, offer, report)
        except Exception as exc:  # a bug must end as a failed install, never a dead agent
            log.exception("OTA install of %s failed unexpectedly", archive)
            return _end(report, "failed", f"unexpected error: {type(exc).__name__}: {exc}")
        finally:
            self.clean_cache()  # the unpacked archive; the slot holds its own verified copy
            self._busy.release()

    def _install(self, archive: Path, offer: Offer, report: Report) -> str:
        report("verifying", 0.1)
        try:
            candidate = load_bundle(archive, cache_dir=self.cache_dir, trusted_keys=self.trusted())
        except EdgefleetError as exc:
            return _end(report, "refused", f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message)
        version = str(candidate.manifest.version)
        current = self.target.current_bundle()
        refusal = self._version_refusal(candidate, current, offer)
        if refusal:
            return _end(report, "refused", refusal, version=version)
        if current is None:
            return _end(
                report, "failed", "the agent has no model loaded yet; install once it serves", version=version
            )
        prep = current.manifest.preprocessing
        report("validating", 0.3)
        result = validate_in_subprocess(
            candidate.path,
            WindowShape(prep.channels, prep.window_length, prep.hop),
            ValidationLimits(
                timeout_s=self.config.validation_timeout_s,
                max_latency_ms=self.config.max_latency_ms,
                max_latency_ratio=self.config.max_latency_ratio,
            ),
            baseline=current.path,
            load_kwargs=self.load_kwargs,
        )
        if not result.ok:
            return _end(
                report, "failed", f"validation: {result.reason}", version=version, metrics=result.metrics
            )
        shadow_s = float(getattr(offer, "shadow_s", 0.0) or 0.0)
        note = None
        if shadow_s > 0:
            # Loudly: the offer asked for a shadow run this agent cannot do yet (docs/ota.md).
            note = f"shadow mode is not built on the agent yet; shadow_s={shadow_s:g} ignored, activating now"
            log.warning("OTA: %s", note)
        report("activating", 0.7, note, result.metrics)
        return self._activate(candidate, current, report, result.metrics)

    def _version_refusal(self, candidate: Bundle, current: Bundle | None, offer: Offer) -> str:
        version = str(candidate.manifest.version)
        if offer.bundle_version is not None and offer.bundle_version != version:
            return f"the offer names version {offer.bundle_version}; the bundle's manifest says {version}"
        if current is None:
            return ""
        active = str(current.manifest.version)
        if candidate.manifest.name == current.manifest.name:
            if version == active:
                return f"version {version} is already active"
            if _version_key(version) < _version_key(active) and not offer.allow_downgrade:
                return (
                    f"downgrade from {active} to {version} refused"
                    " (hint: allow it explicitly: --allow-downgrade / the offer's allow_downgrade)"
                )
        return ""

    def _activate(self, candidate: Bundle, current: Bundle, report: Report, metrics: dict[str, Any]) -> str:
        version = str(candidate.manifest.version)
        try:
            slot = self.slots.stage(candidate.path)
            staged = self.slots.load(slot, self.trusted(), self.cache_dir)
        except (EdgefleetError, OSError) as exc:
            return _end(report, "failed", f"could not write the new model slot: {exc}", version=version)
        watch = ProbationWatch(self._limits(), self.counters, self.store)
        metrics["baseline"] = watch.baseline(str(current.manifest.version))
        self.slots.activate(slot, version)
        watch.start()
        try:
            self.target.swap(staged)
        except Exception as exc:
            self.slots.rollback()
            return _end(report, "failed", f"swap refused: {exc}", version=version)
        self._hook("swapped")
        self._probation = watch
        try:
            report("probation", 0.8, metrics=metrics)
            self._hook("probation")
            outcome = watch.run(version, self._stop)
        finally:
            self._probation = None
        if outcome.ok:
            self.slots.commit()
            self._hook("committed")
            return _end(
                report,
                "done",
                "probation passed; committed",
                version=version,
                metrics=outcome.metrics,
                ok=True,
            )
        if self._stop.is_set() and not watch.abort.is_set():
            # Stopping: leave the pointer uncommitted; the next start goes back to the previous model.
            return _end(report, "failed", outcome.reason, version=version)
        error = self.last_rollback_error = self.rollback_now()
        detail = outcome.reason if error is None else f"{outcome.reason}; the rollback failed: {error}"
        state = "rolled_back" if error is None else "failed"
        return _end(report, state, detail, version=version, metrics=outcome.metrics)

    def _limits(self) -> ProbationLimits:
        c = self.config
        return ProbationLimits(
            duration_s=c.probation_s,
            min_windows=c.probation_min_windows,
            max_error_rate=c.probation_max_error_rate,
            max_p95_ratio=c.probation_max_p95_ratio,
            max_p95_ms=c.probation_max_p95_ms,
            min_confidence_ratio=c.probation_min_confidence_ratio,
            max_fallback_increase=c.probation_max_fallback_increase,
            max_drift_alerts=c.probation_max_drift_alerts,
        )

    # -- rollback ---------------------------------------------------------------------------

    def request_rollback(self, reason: str) -> str | None:
        """``rollback_model``: end a probation in progress (its thread rolls back) and return None,
        or roll back now; returns the error if it cannot. Runs the swap in the caller's thread."""
        watch = self._probation
        if watch is not None:
            watch.request_abort(reason)
            # The install thread rolls back as its probation ends; wait for it to say how it went.
            if not self._busy.acquire(timeout=120.0):
                return "the install in probation did not finish its rollback within 120 s"
            self._busy.release()
            return self.last_rollback_error
        if not self._busy.acquire(blocking=False):
            return "an install is being verified or validated; roll back after it"
        try:
            return self.rollback_now()
        finally:
            self._busy.release()

    def rollback_now(self) -> str | None:
        """Swap the previous model back in and point at it; the error text, or None."""
        pointer = self.slots.read()
        if pointer.active is None:
            return "no previous model: the configured bundle is active"
        try:
            if pointer.previous is None:
                previous = self.target.configured_bundle()
            else:
                previous = self.slots.load(pointer.previous, self.trusted(), self.cache_dir)
        except EdgefleetError as exc:
            return f"the previous model cannot be loaded: {exc.message}"
        self.slots.rollback()  # pointer first: a crash from here on restarts on the previous model
        self._hook("rolled_back_pointer")
        try:
            self.target.swap(previous)
        except Exception as exc:
            return f"swapping the previous model back in failed: {exc}"
        return None

    def clean_cache(self) -> None:
        shutil.rmtree(self.cache_dir, ignore_errors=True)


def _end(
    report: Report,
    state: str,
    detail: str,
    *,
    version: str | None = None,
    metrics: dict[str, Any] | None = None,
    ok: bool = False,
) -> str:
    if not ok:
        log.warning("OTA install %s: %s", state, detail)
    report(state, 1.0, detail, metrics=metrics)
    return state
