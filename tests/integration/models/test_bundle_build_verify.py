"""build_bundle / verify_bundle against real models, and the `edgefleet bundle` CLI round trip."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TypedDict

import numpy as np
import numpy.typing as npt
import pytest

from edgefleet.cli.main import main
from edgefleet.errors import BundleError
from edgefleet.runtime.bundle import Preprocessing, build_bundle, load_bundle, sha256_file
from edgefleet.runtime.bundle_manifest import Task
from edgefleet.runtime.bundle_verify import verify_bundle

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[3] / "models"
SHIPPED = MODELS / "bundles" / "basicmotions-edge-tflite"
DATA = MODELS / "data" / "basicmotions.npz"


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SHIPPED, tmp_path / "bundle"))


def _rewrite_manifest(path: Path, **changes: object) -> dict[str, object]:
    data: dict[str, object] = json.loads((path / "manifest.json").read_text())
    data.update(changes)
    (path / "manifest.json").write_text(json.dumps(data))
    return data


def test_corrupt_model_with_matching_hash_fails_to_load(bundle_dir: Path) -> None:
    model = bundle_dir / "basicmotions-int8.tflite"
    model.write_bytes(b"TFL3 this is not a flatbuffer" * 10)
    data = json.loads((bundle_dir / "manifest.json").read_text())
    data["model"].update(sha256=sha256_file(model), size_bytes=model.stat().st_size)
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    report = verify_bundle(bundle_dir)
    assert not report.ok
    assert [c.name for c in report.checks if not c.ok] == ["model"]


def test_tampered_model_fails_the_hash_check(bundle_dir: Path) -> None:
    model = bundle_dir / "basicmotions-int8.tflite"
    raw = bytearray(model.read_bytes())
    raw[-100] ^= 0x01
    model.write_bytes(bytes(raw))
    report = verify_bundle(bundle_dir)
    assert not report.ok
    assert "sha256" in report.problems[0]
    with pytest.raises(BundleError, match="failed verification"):
        report.raise_for_problems()


def test_canary_failure_is_detected(bundle_dir: Path) -> None:
    data = json.loads((bundle_dir / "manifest.json").read_text())
    case = data["canary"][1]
    case["expected"]["output_0"] = [v + 0.3 for v in case["expected"]["output_0"]]
    data["canary"][2]["expected_label"] = "Badminton"
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    report = verify_bundle(bundle_dir)
    failed = [c.detail for c in report.checks if not c.ok]
    assert any("canary 1: output 'output_0' differs by 0.3" in d for d in failed)
    assert any("canary 2: predicted 'Walking'; expected 'Badminton'" in d for d in failed)
    assert verify_bundle(bundle_dir, run_canary=False).ok


def test_swapped_canary_inputs_are_detected(bundle_dir: Path) -> None:
    with np.load(bundle_dir / "canary.npz") as d:
        inputs = d["inputs"][::-1].copy()
    np.savez(bundle_dir / "canary.npz", inputs=inputs)
    data = json.loads((bundle_dir / "manifest.json").read_text())
    data["canary_file"].update(
        sha256=sha256_file(bundle_dir / "canary.npz"), size_bytes=(bundle_dir / "canary.npz").stat().st_size
    )
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    report = verify_bundle(bundle_dir)
    assert sum(not c.ok and c.name == "canary" for c in report.checks) >= 4


def test_manifest_that_does_not_match_the_model(bundle_dir: Path) -> None:
    data = json.loads((bundle_dir / "manifest.json").read_text())
    data["inputs"][0]["shape"] = [None, 40, 6]
    data["outputs"][0]["dtype"] = "float32"
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    details = [c.detail for c in verify_bundle(bundle_dir).checks if not c.ok]
    assert any("manifest shape [None, 40, 6], model shape [None, 50, 6]" in d for d in details)
    assert any("manifest dtype float32, model dtype int8" in d for d in details)


def test_verify_reports_an_invalid_manifest_without_raising(bundle_dir: Path) -> None:
    _rewrite_manifest(bundle_dir, version="1.0", surprise=1)
    report = verify_bundle(bundle_dir)
    assert not report.ok
    assert report.to_json()["ok"] is False
    assert {p.split(": ")[1] for p in report.problems} == {"version", "surprise"}


def _prep() -> Preprocessing:
    with np.load(DATA) as d:
        flat = d["X_train"].reshape(-1, 6)
        return Preprocessing(
            window_length=50,
            hop=10,
            channels=6,
            channel_names=[str(n) for n in d["channel_names"]],
            sample_rate_hz=10.0,
            mean=[float(v) for v in flat.mean(0)],
            std=[float(v) for v in flat.std(0)],
        )


class _BuildOptions(TypedDict):
    """The keyword arguments of build_bundle that the reproducibility test passes every time."""

    name: str
    version: str
    task: Task
    preprocessing: Preprocessing
    labels: list[str]
    reference_windows: npt.ArrayLike
    canary_windows: npt.ArrayLike
    created_at: datetime


def test_build_bundle_is_reproducible_and_verifies(tmp_path: Path) -> None:
    with np.load(DATA) as d:
        windows = d["X_train"][:, :50].copy()
        labels = [str(v) for v in d["labels"]]
    kwargs: _BuildOptions = {
        "name": "fp32-demo",
        "version": "0.1.0",
        "task": "classification",
        "preprocessing": _prep(),
        "labels": labels,
        "reference_windows": windows,
        "canary_windows": windows[::10],
        "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
    }
    a = build_bundle(MODELS / "demo" / "basicmotions-fp32.onnx", tmp_path / "a", **kwargs)
    b = build_bundle(MODELS / "demo" / "basicmotions-fp32.onnx", tmp_path / "b.tar", tar=True, **kwargs)
    bundle = load_bundle(a)
    assert bundle.manifest.canary[0].tolerance == pytest.approx(1e-3)
    assert bundle.manifest.reference is not None
    assert bundle.manifest.reference.windows == 40
    assert verify_bundle(b, cache_dir=tmp_path / "cache").ok
    again = build_bundle(MODELS / "demo" / "basicmotions-fp32.onnx", tmp_path / "c.tar", tar=True, **kwargs)
    assert again.read_bytes() == b.read_bytes()
    with pytest.raises(BundleError, match="already exists"):
        build_bundle(MODELS / "demo" / "basicmotions-fp32.onnx", a, **kwargs)


def test_build_rejects_settings_that_do_not_fit_the_model(tmp_path: Path) -> None:
    prep = _prep().model_copy(update={"window_length": 40})
    with pytest.raises(BundleError) as info:
        build_bundle(
            MODELS / "demo" / "basicmotions-fp32.onnx",
            tmp_path / "x",
            name="x",
            version="1.0.0",
            task="classification",
            preprocessing=prep,
            labels=["a", "b", "c"],
        )
    text = "\n".join(info.value.problems)
    assert "does not take (N, 40, 6)" in text
    assert "3 labels" in text
    assert not (tmp_path / "x").exists()
    with pytest.raises(BundleError, match=r"expected \.tflite or \.onnx"):
        build_bundle(DATA, tmp_path / "y", name="y", version="1.0.0", task="raw", preprocessing=_prep())


def test_build_refuses_to_replace_a_non_bundle_directory(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a bundle"):
        build_bundle(
            MODELS / "demo" / "basicmotions-fp32.onnx",
            precious,
            name="x",
            version="1.0.0",
            task="classification",
            preprocessing=_prep(),
            labels=["Standing", "Running", "Walking", "Badminton"],
            overwrite=True,
        )
    assert (precious / "notes.txt").read_text() == "keep me"


def test_cli_build_verify_inspect_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-bundle"
    argv = [
        "bundle", "build", "--model", str(MODELS / "demo" / "basicmotions-int8.tflite"),
        "--version", "2.0.0", "--window-length", "50", "--hop", "10",
        "--reference-data", str(DATA), "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    built = capsys.readouterr().out
    assert "OK" in built
    assert f"built {out}" in built
    manifest = load_bundle(out).manifest
    assert manifest.name == "basicmotions-int8"
    assert manifest.labels == ["Standing", "Running", "Walking", "Badminton"]
    assert manifest.preprocessing.channel_names[0] == "acc_x"
    assert len(manifest.canary) == 4

    assert main(["bundle", "verify", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["version"] == "2.0.0"

    assert main(["bundle", "inspect", str(out)]) == 0
    assert "basicmotions-int8 2.0.0 (classification)" in capsys.readouterr().out

    assert main([*argv, "--tar"]) == 1  # --out exists and is a directory: no --force
    assert "already exists" in capsys.readouterr().err

    _rewrite_manifest(out, canary=[])
    with (out / "basicmotions-int8.tflite").open("ab") as fh:
        fh.write(b"\0")
    assert main(["bundle", "verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "FAILED" in text
    assert "[FAIL] manifest" in text


def test_cli_build_reports_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [
        "bundle",
        "build",
        "--model",
        str(MODELS / "demo" / "basicmotions-fp32.onnx"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*base, "--version", "1.0.0", "--window-length", "50"]) == 1
    assert "no normalization" in capsys.readouterr().err
    assert main([*base, "--version", "1", "--window-length", "50", "--reference-data", str(DATA)]) == 1
    err = capsys.readouterr().err
    assert "version" in err
    assert "semantic version" in err
    assert main([
        *base, "--version", "1.0.0", "--window-length", "50", "--sample-rate-hz", "10",
        "--mean", "0,0", "--std", "1,1,1", "--labels", "a,b,c,d",
    ]) == 1  # fmt: skip
    assert "one entry per channel" in capsys.readouterr().err
    assert main([*base, "--version", "1.0.0", "--window-length", "500", "--reference-data", str(DATA)]) == 1
    assert "a window needs 500" in capsys.readouterr().err
