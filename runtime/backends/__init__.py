"""Runtime backend plugins, keyed by ``type``.

Each backend is one module declaring a :class:`~edgefleet.runtime.backends.base.Backend`
subclass with a ``type`` key. :data:`BACKEND_PLUGINS` is the one list of them: the registry
(:data:`BACKENDS`) and the choices of the agent config's ``model.backend``
(:data:`BackendName`) are both built from it, so adding a backend is one module plus one
entry there. Importing a backend never imports its inference library, so a device without,
say, onnxruntime still loads ``.tflite`` models; the missing runtime is logged, and loading a
model that needs it raises a ModelLoadError naming the package.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edgefleet.errors import ModelLoadError
from edgefleet.runtime.backends.base import Backend, BackendSession, OpenOptions
from edgefleet.runtime.backends.litert import LiteRTBackend
from edgefleet.runtime.backends.onnx import OnnxBackend

__all__ = [
    "BACKENDS",
    "BACKEND_PLUGINS",
    "Backend",
    "BackendName",
    "BackendSession",
    "OpenOptions",
    "available_backends",
    "backend_for",
    "supported_extensions",
]

log = logging.getLogger(__name__)

BACKEND_PLUGINS: tuple[type[Backend], ...] = (LiteRTBackend, OnnxBackend)
"""Every runtime backend, in the order an extension is looked up."""

BACKENDS: dict[str, type[Backend]] = {cls.type: cls for cls in BACKEND_PLUGINS}
"""The registry: ``type`` key -> backend class."""

if TYPE_CHECKING:
    BackendName = str
else:
    BackendName = Literal[("auto", *BACKENDS)]
"""``model.backend`` in the agent config: ``"auto"`` (by file extension) or a registry key."""

_ALIASES = {"tflite": "litert", "tflite_runtime": "litert", "onnx": "onnxruntime", "ort": "onnxruntime"}


def supported_extensions() -> list[str]:
    return sorted(ext for cls in BACKENDS.values() for ext in cls.extensions)


@cache
def available_backends() -> dict[str, str | None]:
    """``type -> "package version"`` (None where the runtime is missing; logged once)."""
    found: dict[str, str | None] = {}
    for key, cls in BACKENDS.items():
        found[key] = cls.runtime_version()
        if found[key] is None:
            log.info(
                "%s backend unavailable (%s): %s models cannot be loaded", key, cls.install_hint, cls.format
            )
    return found


def backend_for(path: Path, name: str | None = None) -> Backend:
    """The backend for ``path``: the named one if given (it must read this format), else by extension."""
    suffix = path.suffix.lower()
    by_extension = next((cls for cls in BACKENDS.values() if suffix in cls.extensions), None)
    if name is not None:
        key = _ALIASES.get(name.lower(), name.lower())
        cls = BACKENDS.get(key)
        if cls is None:
            raise ModelLoadError(
                f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}",
                path=str(path),
                hint="leave the backend unset to choose it from the file extension",
            )
        if by_extension is not None and by_extension is not cls:
            raise ModelLoadError(
                f"{path}: backend {key!r} reads {', '.join(cls.extensions)} models, not {suffix}",
                path=str(path),
                hint=f"use backend {by_extension.type!r} or leave it unset",
            )
        return cls()
    if by_extension is None:
        raise ModelLoadError(
            f"{path}: unknown model format {suffix or '(no extension)'!r}; "
            f"supported extensions: {', '.join(supported_extensions())}",
            path=str(path),
            hint="export the model to TFLite (.tflite) or ONNX (.onnx)",
        )
    if available_backends().get(by_extension.type) is None:
        raise ModelLoadError(
            f"{path}: no {by_extension.type} runtime is installed to run {suffix} models",
            path=str(path),
            hint=by_extension.install_hint,
        )
    return by_extension()
