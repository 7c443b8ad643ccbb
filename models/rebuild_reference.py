"""Rebuild the shipped BasicMotions bundles' drift reference profiles (manifest schema 3) from the data.

Needs only numpy and the runtime (no TensorFlow): every BasicMotions TRAIN sample is counted once
per channel into 100 percentile bins, and the bundle's own model answers the 240 training
windows (50 samples, hop 10) for the class distribution and the top-class confidence histogram;
the channels' correlation matrix (schema 3) comes from the same samples.
Only ``reference`` and ``schema_version`` of each ``manifest.json`` change; model and canary files
(and so their hashes) stay as they are. The ``.tar`` bundle is left at schema 1 on purpose: it
shows that bundles built before the change keep loading (drift then uses its 10 bins).

    .venv/bin/python models/rebuild_reference.py            # rewrite models/bundles/*/manifest.json
    .venv/bin/python models/rebuild_reference.py --check    # exit 1 if a manifest is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.bundle_manifest import MANIFEST_NAME, SCHEMA_VERSION, manifest_bytes
from edgefleet.runtime.profile import output_profile, reference_profile

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "basicmotions.npz"
BUNDLES = HERE / "bundles"


def training_windows(series: np.ndarray, window_length: int, hop: int) -> np.ndarray:
    starts = range(0, series.shape[1] - window_length + 1, hop)
    return np.stack([s[i : i + window_length] for s in series for i in starts]).astype(np.float32)


def rebuilt_manifest(bundle_dir: Path) -> bytes:
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    prep = manifest.preprocessing
    data = np.load(DATA)
    series = np.asarray(data["X_train"], dtype=np.float32)
    windows = training_windows(series, prep.window_length, prep.hop)
    model = bundle.open_model()
    try:
        outputs = model.predict(bundle.preprocess(windows))
    finally:
        model.close()
    answers = bundle.interpret_batch(outputs)
    confidences = np.array([np.nan if s is None else s for s in answers.scores], dtype=np.float64)
    # The series as (N, 100, C) windows without overlap: every sample counted exactly once,
    # as the drift monitor counts live samples.
    profile = reference_profile(
        series,
        prep.channel_names,
        source=(
            f"BasicMotions TRAIN: {series.shape[0] * series.shape[1]} samples (each once); "
            f"{len(windows)} windows of {prep.window_length}, hop {prep.hop}"
        ),
    )
    profile.windows = len(windows)
    labels = manifest.labels if manifest.task == "classification" else None
    profile.outputs = [
        output_profile(
            name,
            outputs[name],
            labels if i == 0 else None,
            confidences=confidences if i == 0 and labels else None,
        )
        for i, name in enumerate(o.name for o in manifest.outputs)
    ]
    updated = manifest.model_copy(update={"schema_version": SCHEMA_VERSION, "reference": profile})
    return manifest_bytes(type(manifest).model_validate(updated.model_dump()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report manifests that would change")
    args = parser.parse_args(argv)
    stale = []
    # BasicMotions bundles only: the watch bundles' profiles come from build_watch.py (other data).
    for bundle_dir in sorted(p for p in BUNDLES.glob("basicmotions-*") if (p / MANIFEST_NAME).is_file()):
        new = rebuilt_manifest(bundle_dir)
        path = bundle_dir / MANIFEST_NAME
        if path.read_bytes() == new:
            print(f"{path}: up to date")
            continue
        stale.append(path)
        if not args.check:
            path.write_bytes(new)
            print(f"{path}: reference profile rebuilt (schema {SCHEMA_VERSION})")
    if args.check and stale:
        print(f"out of date: {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
