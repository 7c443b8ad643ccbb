"""The demo's OTA material (edgefleet/demo_ota.py) from the shipped models: signed copies the
agents trust, a good 1.1.0 (the new model built by models/build_watch_update.py) and a
deliberately bad 1.2.0 that still passes its own canaries."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.demo import find_models_dir
from edgefleet.demo_ota import BAD_STD_SCALE, GOOD_MODEL, SOURCE, prepare_demo_ota
from edgefleet.errors import BundleError
from edgefleet.runtime.bundle import load_bundle, sha256_file
from edgefleet.runtime.bundle_signing import generate_keys, load_trusted_keys
from edgefleet.runtime.bundle_verify import verify_bundle

pytestmark = pytest.mark.integration


def test_signed_copies_and_two_versions(tmp_path: Path) -> None:
    bundles = find_models_dir() / "bundles"
    ota = prepare_demo_ota(
        tmp_path, find_models_dir(), {"watch-edge-tflite", "watch-edge-onnx", "basicmotions-edge-tflite"}
    )
    trusted = load_trusted_keys([ota.public_key])
    for name, path in ota.signed.items():
        assert load_bundle(path, cache_dir=tmp_path / "cache", trusted_keys=trusted).manifest.name == name
    good, bad = (load_bundle(t, cache_dir=tmp_path / "cache", trusted_keys=trusted) for t in ota.versions)
    assert (good.manifest.version, bad.manifest.version) == ("1.1.0", "1.2.0")
    shipped = json.loads((bundles / "watch-edge-tflite" / "manifest.json").read_text())
    assert bad.manifest.preprocessing is not None
    assert list(bad.manifest.preprocessing.std) == pytest.approx(
        [s * BAD_STD_SCALE for s in shipped["preprocessing"]["std"]]
    )
    # The bad version answers its own (re-recorded) canaries: only probation can catch it.
    model = bad.open_model()
    try:
        inputs = bad.canary_inputs()
        case = bad.manifest.canary[0]
        outputs = model.predict(bad.preprocess(inputs[case.index : case.index + 1]))
        assert bad.interpret(outputs)[0].label == case.expected_label
    finally:
        model.close()
    # Another key does not trust them; the agent toml names the demo key and a short probation.
    _, other = generate_keys(tmp_path / "other")
    with pytest.raises(BundleError):
        load_bundle(ota.versions[0], cache_dir=tmp_path / "cache2", trusted_keys=load_trusted_keys([other]))
    assert f'trusted_keys = ["{ota.public_key}"]' in ota.agent_toml()
    assert tarfile.is_tarfile(ota.versions[1])


def _held_out_windows(models: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Subjects 9 and 10's recordings cut as the agent does (100 samples, hop 50), and their labels."""
    with np.load(models / "data" / "watch.npz") as d:
        samples, offsets, y, test = d["samples"], d["offsets"], d["y"], d["test"]
    xs, ys = [], []
    for i in np.flatnonzero(test):
        rec = samples[offsets[i] : offsets[i + 1]]
        starts = range(0, len(rec) - 100 + 1, 50)
        xs.append(np.stack([rec[s : s + 100] for s in starts]))
        ys.append(np.full(len(starts), y[i]))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def test_good_version_carries_the_shipped_new_model(tmp_path: Path) -> None:
    models = find_models_dir()
    new_model = models / "demo" / GOOD_MODEL
    shipped = load_bundle(models / "bundles" / SOURCE)
    assert new_model.read_bytes() != shipped.model_path.read_bytes()
    assert new_model.stat().st_size < 20_000
    ota = prepare_demo_ota(tmp_path, models, {SOURCE})
    report = verify_bundle(ota.versions[0], cache_dir=tmp_path / "verify")
    assert report.ok, report.problems
    trusted = load_trusted_keys([ota.public_key])
    good = load_bundle(ota.versions[0], cache_dir=tmp_path / "cache", trusted_keys=trusted)
    assert (good.manifest.name, good.manifest.version) == (SOURCE, "1.1.0")
    assert good.manifest.model.sha256 == sha256_file(new_model)
    assert good.model_path.read_bytes() == new_model.read_bytes()
    # 1.0.0's canary windows and normalisation; the expected answers are the new model's own.
    assert np.array_equal(good.canary_inputs(), shipped.canary_inputs())
    assert good.manifest.preprocessing == shipped.manifest.preprocessing
    assert [c.expected for c in good.manifest.canary] != [c.expected for c in shipped.manifest.canary]
    assert good.manifest.reference is not None
    assert shipped.manifest.reference is not None
    # Its input profile comes from the very windows build_watch.py profiled for 1.0.0.
    assert good.manifest.reference.windows == shipped.manifest.reference.windows
    assert good.manifest.reference.channels == shipped.manifest.reference.channels
    # The packaged bundle scores on the held-out subjects what the build script recorded.
    metrics = json.loads((models / "demo" / "watch_update_metrics.json").read_text())
    windows, y = _held_out_windows(models)
    with good.open_model(threads=1) as model:
        preds = good.interpret(model.predict(good.preprocess(windows)))
    labels = good.manifest.labels
    accuracy = float(np.mean([labels.index(p.label or "") == t for p, t in zip(preds, y, strict=True)]))
    assert accuracy == pytest.approx(metrics["versions"]["1.1.0"]["window_accuracy"], abs=0.005)
