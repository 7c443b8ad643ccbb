"""Loading a model file: reading it, picking the backend plugin, opening and warming it up."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import get_args

from edgefleet.errors import EdgefleetError, ModelLoadError
from edgefleet.runtime.backends import OpenOptions, backend_for
from edgefleet.runtime.model import Model
from edgefleet.runtime.tensors import ModelInfo
from edgefleet.types import NanPolicy

__all__ = ["load_model"]

log = logging.getLogger(__name__)


def _read_model_file(path: Path) -> bytes:
    if not path.exists():
        raise ModelLoadError(
            f"{path}: no such model file",
            path=str(path),
            hint="check the path (relative paths start at the cwd)",
        )
    if path.is_dir():
        raise ModelLoadError(
            f"{path}: is a directory, not a model file",
            path=str(path),
            hint="point at the .tflite/.onnx file; for a bundle directory use `edgefleet bundle`",
        )
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(
            f"{path}: cannot read the model file: {exc.strerror}",
            path=str(path),
            hint="check file permissions",
        ) from None
    if not content:
        raise ModelLoadError(
            f"{path}: the model file is empty (0 bytes)",
            path=str(path),
            hint="the copy was probably interrupted; copy the model again",
        )
    return content


def load_model(
    path: str | Path,
    *,
    backend: str | None = None,
    providers: list[str] | tuple[str, ...] | None = None,
    threads: int | None = None,
    inter_op_threads: int | None = None,
    nan_policy: NanPolicy = "reject",
    state_map: Mapping[str, str] | None = None,
    warmup: bool = True,
) -> Model:
    """Load a ``.tflite`` or ``.onnx`` model. Raises ModelLoadError with a hint on any failure."""
    model_path = Path(path).expanduser()
    if nan_policy not in get_args(NanPolicy):
        raise ModelLoadError(
            f"unknown nan_policy {nan_policy!r}; expected one of {list(get_args(NanPolicy))}",
            path=str(model_path),
            hint="'reject' raises on NaN/inf, 'zero' replaces them with 0, 'allow' passes them on",
        )
    for label, count in (("threads", threads), ("inter_op_threads", inter_op_threads)):
        if count is not None and count < 1:
            raise ModelLoadError(
                f"{label} must be at least 1, got {count}",
                path=str(model_path),
                hint="leave it unset for the default",
            )
    plugin = backend_for(model_path, backend)
    content = _read_model_file(model_path)
    options = OpenOptions(providers=providers, threads=threads, inter_op_threads=inter_op_threads)
    session = plugin.open(model_path, content, options)
    info = ModelInfo(
        path=str(model_path),
        format=plugin.format,
        backend=plugin.type,
        runtime=plugin.runtime_version() or "unknown",
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
        inputs=session.inputs,
        outputs=session.outputs,
        providers=session.providers,
        threads=threads,
    )
    model = Model(info, session, nan_policy=nan_policy, state_map=state_map)
    if warmup:
        try:
            model.warm_up()
        except EdgefleetError as exc:
            model.close()
            raise ModelLoadError(
                f"{model_path}: the model fails on a zero batch during warm-up: {exc.message}",
                path=str(model_path),
                hint="load with warmup=False if the model needs non-zero or larger inputs",
            ) from None
    log.debug("loaded %s (%s, %s)", model_path, info.backend, info.sha256[:12])
    return model
