"""The reference profiles fleet drift is scored against, read from bundle manifests.

The controller holds no models; it only needs each model version's reference profile (the
``reference`` of its bundle's ``manifest.json``). ``[drift] reference_bundles`` lists bundle
directories, or directories of bundle directories (e.g. ``models/bundles``); every manifest with a
reference profile found there is indexed by (model name, version). Reports of a version without
one are still merged, and shown unscored with the reason.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgefleet.controller.drift_counts import Thresholds
from edgefleet.errors import EdgefleetError
from edgefleet.runtime.bundle_manifest import MANIFEST_NAME, parse_manifest
from edgefleet.runtime.profile import ReferenceProfile

__all__ = ["DriftReferences", "FleetDriftConfig", "references_for"]

log = logging.getLogger(__name__)


class FleetDriftConfig(BaseModel):
    """``[drift]``: scoring merged drift reports on the controller (docs/drift.md, "Fleet")."""

    model_config = ConfigDict(extra="forbid")

    reference_bundles: list[Path] = Field(
        default_factory=list,
        description="bundle directories (or directories of them) whose reference profiles score fleet drift",
    )
    psi_threshold: float = Field(default=0.1, gt=0, description="merged PSI reported as over its threshold")
    js_threshold: float = Field(default=0.15, gt=0, le=1, description="merged Jensen-Shannon distance over")
    ks_threshold: float = Field(
        default=0.15, gt=0, le=1, description="merged Kolmogorov-Smirnov statistic over"
    )
    scale_threshold: float = Field(
        default=0.2, gt=0, description="merged spread change relative to the other channels' over"
    )
    swap_threshold: float = Field(default=0.3, gt=0, description="merged channel-swap correlation gain over")

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            psi=self.psi_threshold,
            js=self.js_threshold,
            ks=self.ks_threshold,
            scale=self.scale_threshold,
            swap=self.swap_threshold,
        )


class DriftReferences:
    """Reference profiles by (model name, version), loaded once from the configured directories."""

    def __init__(self, directories: list[Path]) -> None:
        self.directories = list(directories)
        self.problems: list[str] = []
        self._profiles: dict[tuple[str, str], ReferenceProfile] = {}
        for directory in self.directories:
            self._scan(directory)

    def _scan(self, directory: Path) -> None:
        if not directory.is_dir():
            self._problem(
                f"[drift] reference_bundles: {directory} is not a directory; expected a bundle directory"
            )
            return
        manifests = [directory / MANIFEST_NAME] if (directory / MANIFEST_NAME).is_file() else []
        manifests += sorted(p / MANIFEST_NAME for p in directory.iterdir() if (p / MANIFEST_NAME).is_file())
        if not manifests:
            self._problem(
                f"[drift] reference_bundles: no {MANIFEST_NAME} in {directory} or its subdirectories"
            )
        for path in manifests:
            try:
                manifest = parse_manifest(path.read_text(encoding="utf-8"), source=str(path))
            except (OSError, UnicodeDecodeError, EdgefleetError) as exc:
                self._problem(f"[drift] reference_bundles: {path} skipped: {exc}")
                continue
            if manifest.reference is not None:
                self._profiles.setdefault((manifest.name, str(manifest.version)), manifest.reference)

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        log.warning("%s", text)

    def __call__(self, name: str | None, version: str | None) -> ReferenceProfile | None:
        if name is None or version is None:
            return None
        return self._profiles.get((name, version))

    @property
    def known(self) -> list[tuple[str, str]]:
        return sorted(self._profiles)


_cache: dict[tuple[Path, ...], DriftReferences] = {}
_cache_lock = threading.Lock()


def references_for(config: FleetDriftConfig) -> DriftReferences:
    """The (cached) references of ``config``: manifests are read once per process."""
    key = tuple(config.reference_bundles)
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = DriftReferences(list(key))
        return found
