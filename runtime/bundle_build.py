"""Writing bundles: the implementation behind :func:`edgefleet.runtime.bundle.build_bundle`.

Builds are reproducible: the manifest is canonical JSON, ``canary.npz`` and the ``.tar`` carry fixed
timestamps and owners, so rebuilding the same model with the same inputs (and ``created_at``) gives
byte-identical files. Every build is verified (hashes, tensors, canaries) before it is returned.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edgefleet.errors import BundleError
from edgefleet.runtime.bundle import sha256_file
from edgefleet.runtime.bundle_manifest import (
    MANIFEST_NAME,
    BundleManifest,
    CanaryCase,
    FileRef,
    ModelFileSpec,
    Preprocessing,
    Task,
    TensorEntry,
    manifest_bytes,
)
from edgefleet.runtime.bundle_verify import check_tensors, verify_bundle
from edgefleet.runtime.loading import load_model
from edgefleet.runtime.model import Model
from edgefleet.runtime.profile import output_profile, reference_profile
from edgefleet.types import FloatArray

__all__ = ["CANARY_NAME", "build", "npz_bytes", "write_tar"]

CANARY_NAME = "canary.npz"
FLOAT_TOLERANCE = 1e-3
QUANTIZED_TOLERANCE = 0.02  # a few output quantization steps: kernels differ between CPUs/runtimes
_BATCH = 64
_FORMATS: dict[str, Literal["tflite", "onnx"]] = {".tflite": "tflite", ".onnx": "onnx"}


def npz_bytes(arrays: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """A deterministic ``.npz`` (fixed zip timestamps), so rebuilt bundles hash the same."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            arr_buf = io.BytesIO()
            np.lib.format.write_array(arr_buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, arr_buf.getvalue())
    return buf.getvalue()


def write_tar(directory: Path, out: Path) -> None:
    """Tar the files of ``directory`` (flat, sorted, owner 0, mtime 0) into ``out`` atomically."""
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            info = tarfile.TarInfo(path.name)
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    os.replace(tmp, out)


def _predict_all(model: Model, normalized: FloatArray) -> dict[str, FloatArray]:
    parts: dict[str, list[FloatArray]] = {}
    for start in range(0, len(normalized), _BATCH):
        for name, value in model.predict(normalized[start : start + _BATCH]).items():
            parts.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _windows(value: npt.ArrayLike, prep: Preprocessing, what: str) -> FloatArray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[1:] != (prep.window_length, prep.channels) or len(arr) == 0:
        raise BundleError(
            f"{what} have shape {arr.shape}; expected (N>0, {prep.window_length}, {prep.channels})",
            hint="pass raw windows cut with the bundle's window_length, channels last",
        )
    if not np.isfinite(arr).all():
        raise BundleError(f"{what} contain NaN or inf", hint="clean the reference data first")
    return arr


def _place_directory(staging: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise BundleError(
                f"{out} already exists", hint="pass overwrite=True (CLI: --force) to replace it"
            )
        if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
            raise BundleError(
                f"{out} is a non-empty directory that is not a bundle; refusing to replace it",
                hint="choose a new output directory",
            )
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    os.replace(staging, out)


def build(
    model_path: Path,
    out: Path,
    *,
    name: str,
    version: str,
    task: Task,
    preprocessing: Preprocessing,
    labels: list[str],
    reference_windows: npt.ArrayLike | None,
    reference_source: str,
    canary_windows: npt.ArrayLike | None,
    canary_tolerance: float | None,
    description: str,
    created_at: datetime | None,
    tar: bool,
    overwrite: bool,
    load_kwargs: dict[str, Any],
) -> Path:
    fmt = _FORMATS.get(model_path.suffix.lower())
    if fmt is None:
        raise BundleError(
            f"model {model_path} has suffix {model_path.suffix!r}; expected .tflite or .onnx",
            path=str(model_path),
            hint="bundle a LiteRT (.tflite) or ONNX (.onnx) model file",
        )
    if tar and out.exists() and not overwrite:
        raise BundleError(f"{out} already exists", hint="pass overwrite=True (CLI: --force) to replace it")
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)

    with load_model(model_path, **load_kwargs) as model:
        quantized = any(s.quantization is not None for s in [*model.info.inputs, *model.info.outputs])
        tolerance = canary_tolerance
        if tolerance is None:
            tolerance = QUANTIZED_TOLERANCE if quantized else FLOAT_TOLERANCE
        output_names = [s.name for s in model.info.outputs]
        manifest = BundleManifest(
            name=name,
            version=version,
            task=task,
            description=description,
            created_at=created_at or datetime.now(timezone.utc),
            model=ModelFileSpec(
                path=model_path.name,
                sha256=sha256_file(model_path),
                size_bytes=model_path.stat().st_size,
                format=fmt,
            ),
            inputs=[TensorEntry(name=s.name, shape=list(s.shape), dtype=s.dtype) for s in model.info.inputs],
            outputs=[
                TensorEntry(name=s.name, shape=list(s.shape), dtype=s.dtype) for s in model.info.outputs
            ],
            labels=labels,
            preprocessing=preprocessing,
        )
        problems = check_tensors(manifest, model)
        if problems:
            raise BundleError(
                f"model {model_path} does not fit the bundle settings",
                path=str(model_path),
                problems=problems,
                hint="match --window-length, the channel count and --labels to the model's tensors",
            )
        class_labels = labels if task == "classification" else None

        if reference_windows is not None:
            ref = _windows(reference_windows, preprocessing, "reference windows")
            outputs = _predict_all(model, ((ref - mean) / std).astype(np.float32))
            profile = reference_profile(
                ref,
                preprocessing.channel_names,
                source=reference_source or f"{len(ref)} reference windows",
            )
            profile.outputs = [
                output_profile(n, outputs[n], class_labels if i == 0 else None)
                for i, n in enumerate(output_names)
            ]
            manifest.reference = profile

        canary_arrays: FloatArray | None = None
        if canary_windows is not None:
            canary_arrays = _windows(canary_windows, preprocessing, "canary windows")
            outputs = _predict_all(model, ((canary_arrays - mean) / std).astype(np.float32))
            cases = []
            for i in range(len(canary_arrays)):
                expected = {n: [float(v) for v in outputs[n][i].ravel()] for n in output_names}
                label = None
                if class_labels:
                    label = class_labels[int(np.argmax(outputs[output_names[0]][i].ravel()))]
                cases.append(
                    CanaryCase(index=i, expected=expected, expected_label=label, tolerance=tolerance)
                )
            manifest.canary = cases

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is readable like any model file
        shutil.copyfile(model_path, staging / model_path.name)
        if canary_arrays is not None:
            data = npz_bytes({"inputs": canary_arrays})
            (staging / CANARY_NAME).write_bytes(data)
            manifest.canary_file = FileRef(
                path=CANARY_NAME, sha256=sha256_file(staging / CANARY_NAME), size_bytes=len(data)
            )
        # Re-validate: attribute assignment above bypassed the model validators.
        manifest = BundleManifest.model_validate(manifest.model_dump())
        (staging / MANIFEST_NAME).write_bytes(manifest_bytes(manifest))
        if tar:
            write_tar(staging, out)
        else:
            _place_directory(staging, out, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    report = verify_bundle(out, load_kwargs=load_kwargs)
    report.raise_for_problems()
    return out
