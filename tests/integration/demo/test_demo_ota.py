"""The demo's OTA material (edgefleet/demo_ota.py) from the shipped bundles: signed copies the
agents trust, a good 1.1.0 and a deliberately bad 1.2.0 that still passes its own canaries."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from edgefleet.demo import find_models_dir
from edgefleet.demo_ota import BAD_STD_SCALE, prepare_demo_ota
from edgefleet.errors import BundleError
from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.bundle_signing import generate_keys, load_trusted_keys

pytestmark = pytest.mark.integration


def test_signed_copies_and_two_versions(tmp_path: Path) -> None:
    bundles = find_models_dir() / "bundles"
    ota = prepare_demo_ota(
        tmp_path, bundles, {"watch-edge-tflite", "watch-edge-onnx", "basicmotions-edge-tflite"}
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
