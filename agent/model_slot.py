"""The model slot: the one owner of the bundle and model the agent infers with.

The inference worker asks the slot for a bundle (:meth:`ModelSlot.acquire_bundle`) and a model
(:meth:`ModelSlot.acquire_model`); both retry while they fail, each failure becoming the
slot's ``error`` (status reports it) and one event per distinct error. Each batch runs on a
model checked out of the slot (:meth:`ModelSlot.checkout` / :meth:`ModelSlot.checkin`), so that
:meth:`ModelSlot.swap` can install a new model at any time while the batch in flight finishes
on the old one: the old model is closed when its last batch is checked in. This is the seam a
hot swap (OTA) and its rollback use; :meth:`ModelSlot.info` is what status shows.

A swap keeps the streams: the new bundle must cut the same windows (channels, window length,
hop) as the bundle the streams were built for, or :meth:`ModelSlot.swap` refuses it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgefleet.errors import ModelError
from edgefleet.runtime import Model
from edgefleet.runtime.bundle import Bundle

__all__ = ["EventSink", "LoadedModel", "ModelSlot", "Waiter"]

log = logging.getLogger(__name__)

EventSink = Callable[..., None]
"""``add_event(kind, message, *, level="info", data=None)``: where the slot records its events."""

Waiter = Callable[[float], bool]
"""Sleeps up to the given seconds between retries; True when the caller is stopping."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One bundle and the model opened from it, as checked out for a batch."""

    bundle: Bundle
    model: Model
    name: str
    version: str
    loaded_at: float


@dataclass(eq=False)
class _Held:
    loaded: LoadedModel
    users: int = 0


class ModelSlot:
    """Owns the agent's bundle and model: acquire (with retries), check out per batch, swap, close."""

    def __init__(
        self,
        *,
        load_bundle: Callable[[], Bundle],
        open_model: Callable[[Bundle], Model] | None = None,
        retry_s: float = 5.0,
        add_event: EventSink | None = None,
    ) -> None:
        self._load_bundle = load_bundle
        self._open_model = open_model or (lambda bundle: bundle.open_model())
        self.retry_s = retry_s
        self._add_event = add_event or (lambda *args, **kwargs: None)
        self._lock = threading.Lock()
        self._held: _Held | None = None
        # Swapped-out models still running a batch, by id(LoadedModel): closed at their checkin.
        self._retiring: dict[int, _Held] = {}
        self._bundle: Bundle | None = None
        self._name: str | None = None
        self._version: str | None = None
        self._error: str | None = None
        self._attempts = 0
        self._closed = False

    # -- acquiring ------------------------------------------------------------------------

    def acquire_bundle(self, wait: Waiter) -> Bundle | None:
        """Load the bundle, retrying every ``retry_s`` while it fails; None when stopping."""
        while True:
            try:
                bundle = self._load_bundle()
            except Exception as exc:
                self._record_failure("model bundle failed to load", exc)
                if wait(self.retry_s):
                    return None
                continue
            with self._lock:
                self._bundle = bundle
                self._name = bundle.manifest.name
                self._version = str(bundle.manifest.version)
            return bundle

    def acquire_model(self, bundle: Bundle, wait: Waiter) -> LoadedModel | None:
        """Open ``bundle``'s model into the slot, retrying while it fails; None when stopping.

        ``wait`` runs between attempts (the pipeline hands windows to its fallback router there).
        """
        while True:
            try:
                model = self._open_model(bundle)
            except Exception as exc:
                self._record_failure(f"model {bundle.manifest.name} failed to load", exc)
                if wait(self.retry_s):
                    return None
                continue
            loaded = LoadedModel(
                bundle, model, bundle.manifest.name, str(bundle.manifest.version), loaded_at=time.time()
            )
            with self._lock:
                closed = self._closed
                if not closed:
                    self._held = _Held(loaded)
                    self._name, self._version = loaded.name, loaded.version
                    self._error = None
            if closed:  # the pipeline stopped while the model was opening
                _close_model(model)
                return None
            self._announce(loaded, "model_loaded", "loaded")
            return loaded

    def _announce(self, loaded: LoadedModel, kind: str, verb: str) -> None:
        log.info(
            "model %s %s %s",
            loaded.name,
            loaded.version,
            verb,
            extra={"model": loaded.name, "model_version": loaded.version},
        )
        self._event(
            kind,
            f"model {loaded.name} {loaded.version} {verb}",
            data={"name": loaded.name, "version": loaded.version},
        )

    def _record_failure(self, what: str, exc: BaseException) -> None:
        message = f"{what}: {exc}"
        with self._lock:
            first = self._error != message
            self._error = message
            self._attempts += 1
        if first:
            # Log and record an event once per distinct error, not on every retry.
            log.error("%s; retrying every %.0fs", message, self.retry_s)
            self._event("model_load_failed", message, level="error")

    def _event(
        self, kind: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        try:
            self._add_event(kind, message, level=level, data=data)
        except Exception as exc:
            log.warning("could not record %s event: %s", kind, exc)

    # -- per batch ------------------------------------------------------------------------

    @property
    def current(self) -> LoadedModel | None:
        """The model new batches run on, or None before one loaded / after close."""
        held = self._held
        return None if held is None else held.loaded

    def checkout(self) -> LoadedModel | None:
        """The current model, held open until :meth:`checkin` (a swap meanwhile waits to close it)."""
        with self._lock:
            held = self._held
            if held is None:
                return None
            held.users += 1
            return held.loaded

    def checkin(self, loaded: LoadedModel) -> None:
        """Done with a model from :meth:`checkout`; closes it if it was swapped out meanwhile."""
        with self._lock:
            held = self._retiring.get(id(loaded))
            if held is None:
                current = self._held
                if current is not None and current.loaded is loaded:
                    current.users -= 1
                return
            held.users -= 1
            if held.users > 0:
                return
            del self._retiring[id(loaded)]
        _close(loaded)

    # -- swapping and closing ------------------------------------------------------------

    def swap(self, bundle: Bundle, model: Model | None = None) -> LoadedModel:
        """Make ``bundle`` (and ``model``, opened from it if not given) the one new batches use.

        The previous model is closed once the batch in flight on it is checked in. Raises
        ModelError when the bundle cuts other windows than the streams were built for, and
        whatever opening the model raises; either way the running model stays in the slot.
        """
        with self._lock:
            streams_for = self._bundle
        if streams_for is not None:
            _check_same_windows(streams_for, bundle)
        if model is None:
            model = self._open_model(bundle)
        loaded = LoadedModel(
            bundle, model, bundle.manifest.name, str(bundle.manifest.version), loaded_at=time.time()
        )
        with self._lock:
            closed = self._closed
            old = None if closed else self._held
            if not closed:
                self._held = _Held(loaded)
                self._bundle = bundle
                self._name, self._version = loaded.name, loaded.version
                self._error = None
            if old is not None and old.users > 0:
                self._retiring[id(old.loaded)] = old  # its batch in flight closes it at checkin
                old = None
        if closed:
            _close_model(model)
            raise ModelError(
                f"cannot swap in model {bundle.manifest.name}: the model slot is closed",
                hint="the pipeline is stopping; the next start loads the configured bundle",
            )
        if old is not None:
            _close(old.loaded)
        self._announce(loaded, "model_swapped", "swapped in")
        return loaded

    def close(self) -> None:
        """Close the current model (after the batch in flight on it); the slot stays closed."""
        with self._lock:
            self._closed = True
            held, self._held = self._held, None
            if held is not None and held.users > 0:
                self._retiring[id(held.loaded)] = held
                return
        if held is not None:
            _close(held.loaded)

    # -- status ---------------------------------------------------------------------------

    def info(self, *, stopping: bool = False) -> dict[str, Any]:
        """What status shows: state (loading, loaded, failed, closed), name, version, error..."""
        with self._lock:
            held = self._held
            if held is not None:
                phase = "loaded"
            elif stopping or self._closed:
                phase = "closed"
            else:
                phase = "failed" if self._error else "loading"
            return {
                "state": phase,
                "name": self._name,
                "version": self._version,
                "loaded": held is not None,
                "error": self._error,
                "loaded_at": None if held is None else held.loaded.loaded_at,
                "attempts": self._attempts,
            }


def _check_same_windows(current: Bundle, new: Bundle) -> None:
    old, fresh = current.manifest.preprocessing, new.manifest.preprocessing
    was = (old.channels, old.window_length, old.hop)
    now = (fresh.channels, fresh.window_length, fresh.hop)
    if was != now:
        raise ModelError(
            f"cannot swap in model {new.manifest.name}: it takes windows of "
            f"(channels, length, hop) {now}, the streams cut {was}",
            hint="a model with other windows needs the agent restarted with it (`edgefleet agent run`)",
        )


def _close(loaded: LoadedModel) -> None:
    _close_model(loaded.model)


def _close_model(model: Model) -> None:
    try:
        model.close()
    except Exception as exc:
        log.debug("closing the model failed: %s", exc)
