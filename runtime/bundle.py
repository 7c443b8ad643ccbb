"""Model bundles: one model file plus everything needed to run and trust it.

A bundle is a directory (or an uncompressed ``.tar`` of one) holding

- ``manifest.json``: :class:`BundleManifest` - name, semver version, task, the model file's
  sha256/size/format, input/output specs, labels, preprocessing (window, hop, per-channel
  normalization), a reference profile of the training data (drift baseline) and canary cases;
- the model file (``.tflite`` or ``.onnx``);
- ``canary.npz``: raw canary windows (``inputs``, (K, window_length, channels) float32) whose
  expected outputs the manifest records.

:func:`load_bundle` checks sizes and hashes and raises :class:`~edgefleet.errors.BundleError`
listing every problem; :func:`edgefleet.runtime.bundle_verify.verify_bundle` also loads the model,
compares its tensors with the manifest and replays the canaries. :func:`build_bundle` writes one
(implemented in :mod:`edgefleet.runtime.bundle_build`).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edgefleet.errors import BundleError, ModelInputError
from edgefleet.runtime.bundle_manifest import (
    HINT_REBUILD,
    MANIFEST_NAME,
    BundleManifest,
    CanaryCase,
    FileRef,
    ModelFileSpec,
    Preprocessing,
    Task,
    TensorEntry,
    parse_manifest,
)
from edgefleet.types import FloatArray

if TYPE_CHECKING:
    from edgefleet.runtime.bundle_signing import TrustedKey
    from edgefleet.runtime.model import Model

__all__ = [
    "MANIFEST_NAME",
    "Bundle",
    "BundleManifest",
    "CanaryCase",
    "FileRef",
    "Interpretation",
    "ModelFileSpec",
    "Prediction",
    "Preprocessing",
    "TensorEntry",
    "build_bundle",
    "load_bundle",
    "parse_manifest",
    "sha256_file",
]

MAX_TAR_BYTES = 512 * 1024 * 1024  # refuse tar bombs; real bundles are a few MB


@dataclass(frozen=True)
class Prediction:
    """One window's answer: ``label``/``score`` for classification (argmax and its probability),
    ``None`` otherwise; ``values`` is the primary output row, flattened."""

    label: str | None
    score: float | None
    values: FloatArray


@dataclass(frozen=True)
class Interpretation:
    """A batch's answers column by column (no object per window): window ``i`` has
    ``labels[i]`` and ``scores[i]`` (``None`` unless classification) and the output row
    ``values[i]`` (``values`` is ``(N, K)`` float32)."""

    labels: list[str | None]
    scores: list[float | None]
    values: FloatArray

    def __len__(self) -> int:
        return len(self.labels)

    def predictions(self) -> list[Prediction]:
        """The same answers as one :class:`Prediction` per window."""
        return [
            Prediction(label, score, row)
            for label, score, row in zip(self.labels, self.scores, self.values, strict=True)
        ]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(root: Path, ref: FileRef, what: str) -> list[str]:
    path = root / ref.path
    if not path.is_file():
        return [f"{what} {ref.path!r} is missing from {root}"]
    size = path.stat().st_size
    if size != ref.size_bytes:
        return [f"{what} {ref.path!r} is {size} bytes; manifest says {ref.size_bytes}"]
    digest = sha256_file(path)
    if digest != ref.sha256:
        return [f"{what} {ref.path!r} has sha256 {digest[:12]}...; manifest says {ref.sha256[:12]}..."]
    return []


def _check_end_marker(tar: tarfile.TarFile, source: Path, members: list[tarfile.TarInfo]) -> None:
    """BundleError when the archive stops after a member without the end-of-archive zero block.

    tarfile takes the end of the file for the end of the archive, so a copy cut at a member
    boundary would otherwise read as a complete archive that merely lacks files.
    """
    fileobj = tar.fileobj
    fileobj.seek(tar.offset)
    block = fileobj.read(tarfile.BLOCKSIZE)
    if len(block) == tarfile.BLOCKSIZE and block == tarfile.NUL * tarfile.BLOCKSIZE:
        return
    last = f"after member {members[-1].name!r}" if members else "before its first member"
    raise BundleError(
        f"bundle archive {source} is truncated: it ends {last} without the end-of-archive marker",
        path=str(source),
        hint="the copy was cut short (full disk, interrupted download): copy the .tar again, "
        "then check it with `edgefleet bundle verify`",
    )


def _safe_members(tar: tarfile.TarFile, source: Path) -> list[tarfile.TarInfo]:
    """Every member, or BundleError when any could escape the extraction directory."""
    problems: list[str] = []
    members = tar.getmembers()
    _check_end_marker(tar, source, members)
    total = 0
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or m.name.startswith(("/", "\\")) or "\\" in m.name:
            problems.append(f"member {m.name!r} points outside the bundle (absolute path or '..')")
        elif not (m.isfile() or m.isdir()):
            problems.append(f"member {m.name!r} is a link or device; only regular files are allowed")
        total += max(m.size, 0)
    if total > MAX_TAR_BYTES:
        problems.append(f"members total {total} bytes; the limit is {MAX_TAR_BYTES}")
    if problems:
        raise BundleError(
            f"refusing to extract bundle archive {source}",
            path=str(source),
            problems=problems,
            hint="build archives with `edgefleet bundle build --tar`; never trust hand-made tars",
        )
    return members


def _extract_tar(source: Path, cache_dir: Path | None, *, fresh: bool = False) -> Path:
    """Extract ``source`` into a cache directory keyed by its sha256; return the bundle root.

    An earlier extraction is reused unless ``fresh``; callers still hash-check every file.
    """
    base = cache_dir if cache_dir is not None else Path(tempfile.gettempdir()) / "edgefleet-bundles"
    key = sha256_file(source)[:16]
    target = base / f"{source.stem}-{key}"
    if fresh or not (target / MANIFEST_NAME).is_file():
        try:
            base.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=base))
        except OSError as exc:
            raise BundleError(
                f"cannot extract bundle archive {source} into {base}: {exc}",
                path=str(source),
                hint="pass a writable cache_dir (the agent uses <state_dir>/bundles)",
            ) from exc
        try:
            try:
                with tarfile.open(source, "r:*") as tar:
                    for m in _safe_members(tar, source):
                        dest = staging.joinpath(*PurePosixPath(m.name).parts)
                        if m.isdir():
                            dest.mkdir(parents=True, exist_ok=True)
                            continue
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        fh = tar.extractfile(m)
                        if fh is None:  # pragma: no cover - isfile() members always have data
                            continue
                        with fh, dest.open("wb") as out:
                            shutil.copyfileobj(fh, out)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise BundleError(
                    f"cannot read bundle archive {source}: {exc}", path=str(source), hint=HINT_REBUILD
                ) from exc
            shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(staging, target)
            except OSError:
                # Another process extracting the same archive got there first; use its copy.
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if (target / MANIFEST_NAME).is_file():
        return target
    subdirs = [p for p in target.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST_NAME).is_file():
        return subdirs[0]
    raise BundleError(
        f"bundle archive {source} holds no {MANIFEST_NAME}",
        path=str(source),
        hint="the archive must contain manifest.json at its top level (or in one top-level folder)",
    )


class Bundle:
    """A loaded, hash-checked bundle. ``path`` is its directory (extracted when from a tar)."""

    def __init__(self, path: Path, manifest: BundleManifest, *, source: Path | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.source = source if source is not None else path
        self.model_path = path / manifest.model.path
        prep = manifest.preprocessing
        self._mean = np.asarray(prep.mean, dtype=np.float32)
        self._std = np.asarray(prep.std, dtype=np.float32)
        # Normalisation over a flattened window: broadcasting (channels,) over (N, L, C) runs
        # numpy's inner loop only C elements at a time (figures: docs/runtime.md, "Hot-path notes").
        self._mean_row = np.tile(self._mean, prep.window_length)
        self._std_row = np.tile(self._std, prep.window_length)
        self._label_array = np.array(manifest.labels, dtype=object)
        # (primary output's shape, windows) pairs check_outputs has passed: shapes repeat batch after
        # batch, and the full check is a dozen Python and numpy calls on the inference thread
        self._checked_outputs: set[tuple[tuple[int, ...], int]] = set()

    def __repr__(self) -> str:
        return f"Bundle({self.manifest.name} {self.manifest.version} at {self.path})"

    def open_model(self, **load_kwargs: Any) -> Model:
        """Load the bundle's model with :func:`edgefleet.runtime.load_model` (kwargs pass through)."""
        from edgefleet.runtime.loading import load_model

        return load_model(self.model_path, **load_kwargs)

    def preprocess(self, windows: np.ndarray[Any, Any]) -> FloatArray:
        """Raw windows (N, window_length, channels), or one (window_length, channels) -> model input."""
        arr = np.asarray(windows, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None, ...]
        prep = self.manifest.preprocessing
        if arr.ndim != 3 or arr.shape[1:] != (prep.window_length, prep.channels):
            expected = f"(N, {prep.window_length}, {prep.channels})"
            raise ModelInputError(
                f"bundle {self.manifest.name}: windows have shape {tuple(arr.shape)}; expected {expected}",
                tensor=self.manifest.inputs[0].name,
                expected=expected,
                got=str(tuple(arr.shape)),
                hint=f"configure window_length={prep.window_length} and {prep.channels} channels "
                f"({', '.join(prep.channel_names)}) for this model",
            )
        flat = np.subtract(arr.reshape(arr.shape[0], self._mean_row.shape[0]), self._mean_row)
        np.divide(flat, self._std_row, out=flat)
        return flat.reshape(arr.shape)

    def primary_output(self, outputs: Mapping[str, np.ndarray[Any, Any]]) -> FloatArray:
        name = self.manifest.outputs[0].name
        if name in outputs:
            return np.asarray(outputs[name], dtype=np.float32)
        if len(outputs) == 1:
            return np.asarray(next(iter(outputs.values())), dtype=np.float32)
        raise ModelInputError(
            f"bundle {self.manifest.name}: output {name!r} not among {sorted(outputs)}",
            tensor=name,
            hint="pass the dict Model.predict returned for this bundle's model",
        )

    def interpret(self, outputs: Mapping[str, np.ndarray[Any, Any]]) -> list[Prediction]:
        """One :class:`Prediction` per window from the model's outputs."""
        return self.interpret_batch(outputs).predictions()

    def _answer_rows(self, outputs: Mapping[str, np.ndarray[Any, Any]]) -> FloatArray:
        """The primary output as (N, K) rows; for a classifier K must be the label count."""
        values = self.primary_output(outputs)
        # math.prod, not -1: an empty batch cannot infer the row length
        width = math.prod(values.shape[1:]) if values.ndim > 1 else 1
        rows = values.reshape(values.shape[0] if values.ndim > 0 else 1, width)
        labels = self.manifest.labels
        if self.manifest.task == "classification" and width != len(labels):
            raise ModelInputError(
                f"bundle {self.manifest.name}: {width} output values per window but {len(labels)} labels",
                tensor=self.manifest.outputs[0].name,
                expected=str(len(labels)),
                got=str(width),
                hint=HINT_REBUILD,
            )
        return rows

    def check_outputs(self, outputs: Mapping[str, np.ndarray[Any, Any]], windows: int) -> None:
        """Raise :class:`ModelInputError` unless :meth:`interpret_batch` can read ``outputs`` as
        the answers to ``windows`` windows (shapes only: cheap enough for the inference thread)."""
        primary = outputs.get(self.manifest.outputs[0].name)
        shape = None if primary is None else primary.shape
        if (shape, windows) in self._checked_outputs:
            return
        answers = self._answer_rows(outputs).shape[0]
        if answers != windows:
            raise ModelInputError(
                f"model gave {answers} answers for a batch of {windows} windows",
                expected=str(windows),
                got=str(answers),
                hint="the model must keep the batch dimension; rebuild the bundle",
            )
        if shape is not None and len(self._checked_outputs) < 64:  # a few batch sizes in practice
            self._checked_outputs.add((shape, windows))

    def interpret_batch(self, outputs: Mapping[str, np.ndarray[Any, Any]]) -> Interpretation:
        """The answers of a whole batch as columns (the pipeline's hot path: a few numpy calls
        per batch, no object per window). Same answers as :meth:`interpret`."""
        rows = self._answer_rows(outputs)
        n = rows.shape[0]
        if self.manifest.task != "classification":
            return Interpretation([None] * n, [None] * n, rows)
        probs = rows
        if rows.size and (rows.min() < 0 or np.abs(rows.sum(axis=1) - 1).max() > 0.05):
            # logits, not probabilities
            shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        return Interpretation(self._label_array[best].tolist(), probs.max(axis=1).tolist(), rows)

    def canary_inputs(self) -> FloatArray:
        """The raw canary windows (K, window_length, channels) from ``canary.npz``."""
        ref = self.manifest.canary_file
        if ref is None:
            return np.zeros(
                (0, self.manifest.preprocessing.window_length, self.manifest.preprocessing.channels),
                dtype=np.float32,
            )
        try:
            with np.load(self.path / ref.path, allow_pickle=False) as data:
                return np.asarray(data["inputs"], dtype=np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(
                f"cannot read canary inputs {ref.path!r} of {self.path}: {exc}",
                path=str(self.path),
                hint=HINT_REBUILD,
            ) from exc


def load_bundle(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    trusted_keys: Sequence[TrustedKey] = (),
) -> Bundle:
    """Open a bundle directory or ``.tar``; verify manifest, sizes and sha256 of every file.

    With ``trusted_keys``, the manifest's signature (``manifest.sig``) must verify against one of
    them before the manifest is even parsed; unsigned or wrongly signed bundles raise BundleError.

    Archives are extracted (safely: regular files only, no absolute paths or ``..``) under
    ``cache_dir`` (default: ``$TMPDIR/edgefleet-bundles``), keyed by the archive's sha256.
    """
    source = Path(path)
    if not source.exists():
        raise BundleError(
            f"bundle {source} does not exist",
            path=str(source),
            hint="pass a bundle directory (with manifest.json) or a .tar from `edgefleet bundle build --tar`",
        )
    if source.is_file() and source.name == MANIFEST_NAME:
        source = source.parent
    if source.is_dir():
        return _open_root(source, source, trusted_keys)
    if not tarfile.is_tarfile(source):
        raise BundleError(
            f"bundle {source} is neither a directory nor a tar archive",
            path=str(source),
            hint="pass the bundle directory or its .tar",
        )
    cache = Path(cache_dir) if cache_dir is not None else None
    try:
        return _open_root(_extract_tar(source, cache), source, trusted_keys)
    except BundleError:
        # The cached extraction may have been altered since; one fresh extraction settles it.
        return _open_root(_extract_tar(source, cache, fresh=True), source, trusted_keys)


def _open_root(root: Path, source: Path, trusted_keys: Sequence[TrustedKey] = ()) -> Bundle:
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(
            f"bundle {source} has no {MANIFEST_NAME}",
            path=str(source),
            hint="a bundle directory needs manifest.json; build one with `edgefleet bundle build`",
        )
    try:
        raw = manifest_path.read_bytes()
        if trusted_keys:
            from edgefleet.runtime.bundle_signing import verify_manifest_signature

            verify_manifest_signature(root, trusted_keys, source=str(source), manifest=raw)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc}", path=str(source), hint=HINT_REBUILD) from exc
    manifest = parse_manifest(text, source=str(manifest_path))
    problems = _check_file(root, manifest.model, "model file")
    if manifest.canary_file is not None:
        problems += _check_file(root, manifest.canary_file, "canary file")
    if problems:
        raise BundleError(
            f"bundle {manifest.name} {manifest.version} at {source} failed its integrity check",
            path=str(source),
            problems=problems,
            hint=HINT_REBUILD,
        )
    return Bundle(root, manifest, source=source)


def build_bundle(
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    task: Task,
    preprocessing: Preprocessing,
    labels: Sequence[str] = (),
    reference_windows: npt.ArrayLike | None = None,
    reference_source: str = "",
    canary_windows: npt.ArrayLike | None = None,
    canary_tolerance: float | None = None,
    description: str = "",
    created_at: datetime | None = None,
    tar: bool = False,
    overwrite: bool = False,
    load_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle directory (or, with ``tar=True``, a ``.tar`` file at ``out``) and verify it.

    The model is loaded to record its tensors, profile its outputs on ``reference_windows`` (raw,
    (N, window_length, channels)) and compute the canaries' expected outputs; ``canary_tolerance``
    defaults to 1e-3, or 0.02 when the model has quantized input/output tensors.
    """
    from edgefleet.runtime.bundle_build import build

    return build(
        Path(model_path),
        Path(out),
        name=name,
        version=version,
        task=task,
        preprocessing=preprocessing,
        labels=list(labels),
        reference_windows=reference_windows,
        reference_source=reference_source,
        canary_windows=canary_windows,
        canary_tolerance=canary_tolerance,
        description=description,
        created_at=created_at,
        tar=tar,
        overwrite=overwrite,
        load_kwargs=dict(load_kwargs or {}),
    )
