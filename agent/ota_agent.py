"""The agent's OTA side, wired to the running service: the installer, the ``rollback_model``
command, local installs (``edgefleet ota install``) and the start-up choice of model slot.

Kept out of :mod:`edgefleet.agent.service` so the daemon's life cycle stays readable: the service
calls :meth:`AgentOta.recover` once before its first pipeline, :meth:`AgentOta.poll` on each main
loop tick and :meth:`AgentOta.stop` on shutdown.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Protocol

from edgefleet.agent.commands import CommandRegistry, Reply
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.drift_observer import DriftObserver
from edgefleet.agent.inference import ShadowTap
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.ota_install import LocalOffer, OtaInstaller, Report, kill_hook_from_env
from edgefleet.agent.ota_local import ProgressFile, RequestWatch
from edgefleet.agent.ota_slots import SlotStore
from edgefleet.agent.pipeline import Pipeline
from edgefleet.agent.store import Store
from edgefleet.cloud_sync.protocol import CommandBody
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_signing import load_trusted_keys

__all__ = ["AgentOta", "register_ota_commands"]

log = logging.getLogger(__name__)


class OtaHost(Protocol):
    """What :class:`AgentOta` reads from the agent service."""

    config: AgentConfig | None
    store: Store | None
    pipeline: Pipeline | None
    drift: DriftObserver | None
    counters: PipelineCounters


def load_kwargs_of(config: AgentConfig) -> dict[str, Any]:
    model = config.model
    return {
        "backend": None if model.backend == "auto" else model.backend,
        "providers": model.providers,
        "threads": model.threads,
        "nan_policy": model.nan_policy,
    }


def configured_bundle(config: AgentConfig) -> Bundle:
    trusted = load_trusted_keys(config.ota.trusted_keys) if config.ota.trusted_keys else []
    return load_bundle(
        config.model.bundle, cache_dir=config.device.state_dir / "bundles", trusted_keys=trusted
    )


class AgentOta:
    """One per agent process."""

    def __init__(self, host: OtaHost) -> None:
        self._host = host
        self._installer: OtaInstaller | None = None
        self._lock = threading.Lock()
        self._requests = RequestWatch()  # `edgefleet ota install` requests, looked for every tick

    # -- AgentTarget for the installer -----------------------------------------------------

    def current_bundle(self) -> Bundle | None:
        pipeline = self._host.pipeline
        loaded = None if pipeline is None else pipeline.model_slot.current
        return None if loaded is None else loaded.bundle

    def swap(self, bundle: Bundle) -> None:
        pipeline = self._host.pipeline
        if pipeline is None:
            raise RuntimeError("no pipeline is running")
        pipeline.model_slot.swap(bundle)
        drift = self._host.drift
        if drift is not None:
            drift.attach(bundle)  # drift compares against the serving model's reference profile

    def set_shadow(self, tap: ShadowTap | None) -> None:
        # A pipeline rebuilt by a reload during a shadow run starts without the tap: the run then
        # compares fewer windows (and is refused below shadow_min_windows), never the wrong ones.
        pipeline = self._host.pipeline
        if pipeline is not None:
            pipeline.set_shadow(tap)

    def configured_bundle(self) -> Bundle:
        config = self._host.config
        assert config is not None
        return configured_bundle(config)

    # -- life cycle -------------------------------------------------------------------------

    def installer(self) -> OtaInstaller:
        config, store = self._host.config, self._host.store
        assert config is not None
        assert store is not None
        with self._lock:
            if self._installer is None:
                self._installer = OtaInstaller(
                    config=config.ota,
                    state_dir=config.device.state_dir,
                    store_db=store.path,
                    counters=self._host.counters,
                    target=self,
                    load_kwargs=load_kwargs_of(config),
                    hook=kill_hook_from_env(),
                )
            else:  # a reload may have changed [ota] or [model]
                self._installer.config = config.ota
                self._installer.load_kwargs = load_kwargs_of(config)
            return self._installer

    def recover(self) -> None:
        """At start: an activation never committed (killed during probation) is rolled back."""
        config = self._host.config
        assert config is not None
        slots = SlotStore(config.device.state_dir / "models")
        recovered = slots.recover()
        if recovered is not None:
            self._event("ota.rolled_back", recovered, level="warning")

    def poll(self) -> None:
        """Main loop tick: start the local installs queued by ``edgefleet ota install``."""
        config = self._host.config
        if config is None or self._host.store is None:
            return
        for request in self._requests.take(config.device.state_dir):
            progress = ProgressFile(config.device.state_dir, request.request_id)
            report = self._reporter(request.request_id, progress)
            if request.bundle is None:
                report("refused", 1.0, request.error)
                continue
            offer = LocalOffer(
                request.request_id, allow_downgrade=request.allow_downgrade, shadow_s=request.shadow_s
            )
            self.installer().install(request.bundle, offer, report)

    def stop(self) -> None:
        if self._installer is not None:
            self._installer.stop()
            thread = self._installer.thread
            if thread is not None:
                thread.join(5.0)

    def _reporter(self, offer_id: str, progress: ProgressFile | None = None) -> Report:
        def report(
            state: str,
            progress_value: float = 0.0,
            detail: str | None = None,
            metrics: dict[str, Any] | None = None,
        ) -> None:
            level = (
                "error" if state in ("failed", "refused") else "warning" if state == "rolled_back" else "info"
            )
            data = {"offer_id": offer_id, "state": state, "progress": progress_value, "detail": detail}
            if metrics:
                data["metrics"] = metrics
            self._event(
                f"ota.{state}", f"OTA {offer_id}: {state}" + (f": {detail}" if detail else ""), level, data
            )
            if progress is not None:
                try:
                    progress.add(state, progress_value, detail, metrics)
                except OSError as exc:
                    log.warning("could not write OTA progress: %s", exc)

        return report  # type: ignore[return-value]

    def _event(
        self, kind: str, message: str, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        store = self._host.store
        if store is None:
            return
        try:
            store.add_event(kind, message, level=level, data=data)
        except Exception as exc:
            log.warning("could not record %s event: %s", kind, exc)

    # -- rollback_model -----------------------------------------------------------------------

    def rollback_command(self, registry: CommandRegistry, body: CommandBody) -> Reply:
        if self._host.config is None or self._host.store is None:
            return Reply("failed", "the agent is not running yet")
        installer = self.installer()
        reason = f"rollback_model command {body.command_id}"

        def run() -> None:
            error = installer.request_rollback(reason)
            if error is None:
                registry.report(body, "done", "previous model swapped back in")
                self._event(
                    "ota.rolled_back", f"rolled back by command: {reason}", "warning", {"reason": reason}
                )
            else:
                registry.report(body, "failed", error)

        # Loading the previous model takes a while: not on the sync thread.
        threading.Thread(target=run, name="ota-rollback", daemon=True).start()
        return Reply("acked", "rolling back to the previous model")


def register_ota_commands(registry: CommandRegistry, ota: AgentOta) -> None:
    registry.register("rollback_model", functools.partial(ota.rollback_command, registry))
