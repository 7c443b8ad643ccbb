"""A/B model slots on disk: ``<state_dir>/models/{a,b}`` plus a pointer file naming the active one.

Layout::

    <state_dir>/models/a/            an unpacked bundle (manifest.json, manifest.sig, model, canary)
    <state_dir>/models/b/
    <state_dir>/models/slots.json    {"active": "a", "previous": "b", "committed": false, ...}

``active``/``previous`` are a slot name or None, None meaning the bundle named in the config
(``[model] bundle``): the first install keeps the configured bundle as its rollback target.

Every change is crash-safe at every step, because nothing the pointer names is ever written in
place: a new bundle is copied into ``<slot>.tmp`` (files fsynced), renamed over the slot that is
*not* active, the directory fsynced; only then is the pointer rewritten (write a temp file, fsync,
rename, fsync the directory). A power loss leaves either the old pointer (the old model, intact)
or the new one (the new model, complete). A slot the pointer names is still checked (signature,
every file's sha256) each time it is loaded; one that fails falls back to the other, then to the
configured bundle (:meth:`SlotStore.resolve`).

``committed`` is False from activation until probation passes: an agent that restarts with an
uncommitted activation (it was killed or crashed during probation; the new model may be why)
goes back to the previous model (:meth:`SlotStore.recover`), as a boot-loader does with an A/B
update that was never committed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgefleet.errors import BundleError, EdgefleetError
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_signing import TrustedKey

__all__ = ["SLOT_NAMES", "SlotPointer", "SlotStore", "fsync_dir", "write_atomic"]

log = logging.getLogger(__name__)

SLOT_NAMES = ("a", "b")
POINTER_NAME = "slots.json"
_FORMAT = "edgefleet-model-slots/1"

KillHook = Callable[[str], None]
"""Called with a step name at every crash-relevant step (the power-loss test kills the agent there)."""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, hook: KillHook | None = None, phase: str = "") -> None:
    """Write, fsync, rename, fsync the directory: after a crash ``path`` is old or new, never torn."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if hook is not None:
        hook(f"{phase}_pointer_written")
    os.replace(tmp, path)
    if hook is not None:
        hook(f"{phase}_pointer_renamed")
    fsync_dir(path.parent)


@dataclass(frozen=True)
class SlotPointer:
    active: str | None = None
    previous: str | None = None
    committed: bool = True
    versions: dict[str, str] | None = None

    def to_json(self) -> bytes:
        doc = {
            "format": _FORMAT,
            "active": self.active,
            "previous": self.previous,
            "committed": self.committed,
            "versions": self.versions or {},
        }
        return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _describe(slot: str | None) -> str:
    return "the configured bundle" if slot is None else f"slot {slot}"


class SlotStore:
    """The two slots and their pointer under ``root`` (``<state_dir>/models``)."""

    def __init__(self, root: Path, *, hook: KillHook | None = None) -> None:
        self.root = root
        self._hook = hook

    @property
    def pointer_path(self) -> Path:
        return self.root / POINTER_NAME

    def slot_path(self, slot: str) -> Path:
        return self.root / slot

    def _step(self, name: str) -> None:
        if self._hook is not None:
            self._hook(name)

    # -- the pointer ----------------------------------------------------------------------

    def read(self) -> SlotPointer:
        """The pointer; the default (configured bundle, committed) when absent or unreadable."""
        try:
            doc = json.loads(self.pointer_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return SlotPointer()
        except (OSError, ValueError) as exc:
            # Only a bug or a disk fault gets here (the file is replaced atomically); the
            # configured bundle is always a valid place to come back to.
            log.error(
                "model slot pointer %s is unreadable (%s); using the configured bundle",
                self.pointer_path,
                exc,
            )
            return SlotPointer()
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            log.error(
                "model slot pointer %s has an unknown format; using the configured bundle", self.pointer_path
            )
            return SlotPointer()
        active, previous = doc.get("active"), doc.get("previous")
        versions = doc.get("versions")
        return SlotPointer(
            active=active if active in SLOT_NAMES else None,
            previous=previous if previous in SLOT_NAMES else None,
            committed=bool(doc.get("committed", True)),
            versions={str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {},
        )

    def write(self, pointer: SlotPointer, *, phase: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.pointer_path, pointer.to_json(), hook=self._hook, phase=phase)

    # -- staging ----------------------------------------------------------------------------

    def target_slot(self) -> str:
        """The slot a new bundle goes into: never the active one; the previous one is replaced
        unless the configured bundle is active (then the previous slot is kept for rollback)."""
        pointer = self.read()
        if pointer.active is not None:
            return "b" if pointer.active == "a" else "a"
        return "b" if pointer.previous == "a" else "a"

    def stage(self, bundle_root: Path) -> str:
        """Copy an unpacked, verified bundle into the inactive slot; returns the slot name."""
        slot = self.target_slot()
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.slot_path(slot)
        tmp = self.root / f"{slot}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        files = sorted(p for p in bundle_root.rglob("*") if p.is_file())
        for i, src in enumerate(files):
            dest = tmp / src.relative_to(bundle_root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            _copy_fsynced(src, dest)
            if i == 0:
                self._step("stage_partial")
        for directory in sorted({p.parent for p in tmp.rglob("*")}, reverse=True):
            fsync_dir(directory)
        self._step("stage_copied")
        if final.exists():
            # The pointer does not name this slot as active (target_slot), so removing it
            # can only cost the rollback target, and the new previous replaces it below.
            old = self.root / f"{slot}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            self._step("stage_old_moved")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
        fsync_dir(self.root)
        self._step("staged")
        return slot

    def activate(self, slot: str, version: str) -> SlotPointer:
        """Point at ``slot`` (uncommitted: probation decides); the active one becomes previous."""
        old = self.read()
        versions = dict(old.versions or {})
        versions[slot] = version
        new = SlotPointer(active=slot, previous=old.active, committed=False, versions=versions)
        self.write(new, phase="activate")
        return new

    def commit(self) -> SlotPointer:
        pointer = replace(self.read(), committed=True)
        self.write(pointer, phase="commit")
        return pointer

    def rollback(self) -> SlotPointer:
        """Swap active and previous (committed: the previous model was known good)."""
        old = self.read()
        new = SlotPointer(active=old.previous, previous=old.active, committed=True, versions=old.versions)
        self.write(new, phase="rollback")
        return new

    # -- loading ------------------------------------------------------------------------------

    def load(self, slot: str, trusted: Sequence[TrustedKey], cache_dir: Path) -> Bundle:
        path = self.slot_path(slot)
        if not (path / "manifest.json").is_file():
            raise BundleError(
                f"model slot {slot} ({path}) holds no bundle",
                path=str(path),
                hint="it was being written when the agent stopped; the other slot is used",
            )
        return load_bundle(path, cache_dir=cache_dir, trusted_keys=trusted)

    def recover(self) -> str | None:
        """At agent start, before any model loads: an activation that was never committed (the
        agent was killed or crashed during probation; the new model may be why) is rolled back.
        Returns what was done, or None when there was nothing to do."""
        pointer = self.read()
        if pointer.committed or pointer.active is None:
            return None
        self.write(SlotPointer(pointer.previous, pointer.active, True, pointer.versions), phase="recover")
        return (
            f"the agent restarted during the probation of {_describe(pointer.active)}; "
            f"back on {_describe(pointer.previous)}"
        )

    def resolve(
        self,
        configured: Callable[[], Bundle],
        trusted: Sequence[TrustedKey],
        cache_dir: Path,
        *,
        on_event: Callable[[str, str, dict[str, Any]], object] | None = None,
    ) -> Bundle:
        """The bundle to start on: the active slot, verified; else the previous; else the configured."""
        pointer = self.read()
        emit = on_event or (lambda kind, message, data: None)
        for slot in dict.fromkeys([pointer.active, pointer.previous]):  # unique, in order
            if slot is None:
                return configured()
            try:
                return self.load(slot, trusted, cache_dir)
            except EdgefleetError as exc:
                log.error("model slot %s refused: %s", slot, exc.message)
                emit("ota.slot_invalid", f"model slot {slot} refused: {exc.message}", {"slot": slot})
        return configured()


def _copy_fsynced(src: Path, dest: Path) -> None:
    with src.open("rb") as fin, dest.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
