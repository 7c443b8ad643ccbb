"""The demo's over-the-air part: signed model versions for a campaign from the dashboard.

At start the demo makes a signing key (``<workdir>/ota-keys``), signs copies of the bundles its
agents load (with ``[ota] trusted_keys`` set, an agent loads only signed bundles), and packages two
new versions of the demo's watch TFLite model (``watch-edge-tflite``), signed and packed as ``.tar``:

* ``1.1.0``: a new model, ``models/demo/watch-edge-int8-1.1.0.tflite``, trained by
  ``models/build_watch_update.py`` (the 1.0.0 network and export, trained longer; its held-out
  accuracy beside 1.0.0's is in ``models/demo/watch_update_metrics.json``). It is bundled here with
  :func:`~edgefleet.runtime.bundle.build_bundle`: 1.0.0's normalisation (same training subjects),
  labels and canary windows, its canaries recorded with the new model, and a reference profile made
  from the training subjects' windows as the build script makes it. It passes validation and
  probation;
* ``1.2.0``: deliberately bad but consistently packaged: the shipped 1.0.0 bundle with its
  normalisation std scaled x20, so every window is squashed towards zero and answered with low
  confidence; its canaries are re-recorded with that model, so it passes validation (as a badly
  trained model would) and only probation catches it (mean confidence below 0.8x the previous
  model's): rolled back by the device itself, and a campaign of it halts.

Keys are made per demo run, so the packaging and signing happen at start, not in the build.
Both are registered with the controller, so the dashboard's campaigns page offers them. The
devices tagged :data:`OTA_TAG` (those running the watch TFLite model) are the natural target.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefleet.demo_watch import training_windows
from edgefleet.runtime.bundle import build_bundle, load_bundle
from edgefleet.runtime.bundle_signing import generate_keys, sign_bundle

__all__ = ["OTA_TAG", "DemoOta", "prepare_demo_ota"]

OTA_TAG = "ota-demo"
SOURCE = "watch-edge-tflite"
GOOD_VERSION = "1.1.0"
BAD_VERSION = "1.2.0"
GOOD_MODEL = f"watch-edge-int8-{GOOD_VERSION}.tflite"  # in models/demo/, from models/build_watch_update.py
BAD_STD_SCALE = 20.0
# Short enough to watch: a verdict after 8 s and 20 windows (the demo devices make ~4-10 a second).
PROBATION_TOML = "probation_s = 8.0\nprobation_min_windows = 20\n"


@dataclass(frozen=True)
class DemoOta:
    public_key: Path
    signed: dict[str, Path]
    """Shipped bundle name -> its signed copy (what the agents load)."""
    versions: tuple[Path, ...]
    """The new versions' ``.tar`` files, to register with the controller."""

    def agent_toml(self) -> str:
        return f'\n[ota]\ntrusted_keys = ["{self.public_key}"]\n{PROBATION_TOML}'

    def register(self, http_port: int, token: str) -> list[str]:
        """Register the versions with the running controller; their ``name@version``."""
        registered = []
        for tar in self.versions:
            request = urllib.request.Request(
                f"http://127.0.0.1:{http_port}/api/ota/bundles",
                data=json.dumps({"path": str(tar)}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                info = json.loads(response.read())
            registered.append(f"{info['name']}@{info['version']}")
        return registered


def _manifest(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((path / "manifest.json").read_text())
    return data


def _copy(source: Path, dest: Path, version: str | None) -> Path:
    shutil.copytree(source, dest)
    (dest / "manifest.sig").unlink(missing_ok=True)
    if version is not None:
        manifest = _manifest(dest)
        manifest["version"] = version
        (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return dest


def _make_bad(bundle_dir: Path) -> None:
    manifest = _manifest(bundle_dir)
    prep = manifest["preprocessing"]
    assert isinstance(prep, dict)
    prep["std"] = [float(s) * BAD_STD_SCALE for s in prep["std"]]
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    bundle = load_bundle(bundle_dir)
    model = bundle.open_model()
    try:
        inputs = bundle.canary_inputs()
        cases = manifest["canary"]
        assert isinstance(cases, list)
        for case in cases:
            outputs = model.predict(bundle.preprocess(inputs[case["index"] : case["index"] + 1]))
            for name in case["expected"]:
                case["expected"][name] = np.asarray(outputs[name], dtype=np.float64).ravel().tolist()
            case["expected_label"] = bundle.interpret(outputs)[0].label
    finally:
        model.close()
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _build_good(models: Path, dest: Path) -> Path:
    shipped = load_bundle(models / "bundles" / SOURCE)
    manifest = shipped.manifest
    reference = manifest.reference
    return build_bundle(
        models / "demo" / GOOD_MODEL,
        dest,
        name=manifest.name,
        version=GOOD_VERSION,
        task=manifest.task,
        preprocessing=manifest.preprocessing,
        labels=manifest.labels,
        reference_windows=training_windows(models),
        reference_source=reference.source if reference is not None else "",
        canary_windows=shipped.canary_inputs(),
        canary_tolerance=max((c.tolerance for c in manifest.canary), default=None),
        description=f"{manifest.description} Version {GOOD_VERSION}: the same network trained longer.",
    )


def _tar(directory: Path) -> Path:
    tar_path = directory.with_suffix(".tar")
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return tar_path


def prepare_demo_ota(workdir: Path, models: Path, loaded: set[str]) -> DemoOta:
    """Key, signed copies of the ``loaded`` bundles (in ``models/bundles``), and the two new
    versions (see the module doc)."""
    private, public = generate_keys(workdir / "ota-keys")
    out = workdir / "ota-bundles"
    out.mkdir(exist_ok=True)
    signed = {}
    for name in sorted(loaded):
        copy = _copy(models / "bundles" / name, out / name, None)
        sign_bundle(copy, private)
        signed[name] = copy
    versions = []
    good = _build_good(models, out / f"{SOURCE}-{GOOD_VERSION}")
    bad = _copy(models / "bundles" / SOURCE, out / f"{SOURCE}-{BAD_VERSION}", BAD_VERSION)
    _make_bad(bad)
    for copy in (good, bad):
        sign_bundle(copy, private)
        versions.append(_tar(copy))
    return DemoOta(public_key=public, signed=signed, versions=tuple(versions))
