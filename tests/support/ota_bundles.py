"""Real bundle versions for OTA tests, made from the demo bundle.

:func:`make_version` copies ``models/bundles/basicmotions-edge-tflite``, sets its manifest version
and re-signs it with a test key. ``std_scale`` > 1 makes a *consistent but bad* model: its
normalisation squashes every window towards zero, so it answers with low confidence; its
canaries are re-recorded with the real model so that it passes validation (as a badly trained
but correctly packaged model would) and only probation can catch it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.bundle_signing import sign_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "models" / "bundles" / "basicmotions-edge-tflite"
WATCH = REPO_ROOT / "models" / "bundles" / "watch-edge-tflite"


def _manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return data


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def make_version(
    dest: Path,
    version: str,
    key: Path | None,
    *,
    source: Path = DEMO,
    std_scale: float = 1.0,
    edit: Any = None,
) -> Path:
    """A signed (when ``key``) copy of ``source`` at ``version``; see the module doc."""
    shutil.copytree(source, dest)
    (dest / "manifest.sig").unlink(missing_ok=True)
    manifest = _manifest(dest)
    manifest["version"] = version
    if std_scale != 1.0:
        prep = manifest["preprocessing"]
        prep["std"] = [s * std_scale for s in prep["std"]]
        write_manifest(dest, manifest)
        bundle = load_bundle(dest)
        model = bundle.open_model()
        try:
            inputs = bundle.canary_inputs()
            for case in manifest["canary"]:
                outputs = model.predict(bundle.preprocess(inputs[case["index"] : case["index"] + 1]))
                for name in case["expected"]:
                    case["expected"][name] = np.asarray(outputs[name], dtype=np.float64).ravel().tolist()
                case["expected_label"] = bundle.interpret(outputs)[0].label
        finally:
            model.close()
    if edit is not None:
        edit(manifest)
    write_manifest(dest, manifest)
    if key is not None:
        sign_bundle(dest, key)
    return dest


def replace_model_file(bundle: Path, model_bytes: bytes, name: str, fmt: str) -> None:
    """Put another model file into ``bundle`` and fix the manifest's file entry (sha256, size)."""
    manifest = _manifest(bundle)
    (bundle / manifest["model"]["path"]).unlink()
    (bundle / name).write_bytes(model_bytes)
    manifest["model"] = {
        "path": name,
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "size_bytes": len(model_bytes),
        "format": fmt,
    }
    write_manifest(bundle, manifest)
