"""The real ``edgefleet model`` console script, run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "runtime"
DEMO_TFLITE = ROOT / "models" / "demo" / "basicmotions-int8.tflite"


def _edgefleet(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "edgefleet"
    if not script.exists():
        script = ROOT / ".venv" / "bin" / "edgefleet"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120, check=False)


def test_model_inspect_json_on_the_demo_model() -> None:
    result = _edgefleet("model", "inspect", str(DEMO_TFLITE), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "tflite"
    assert info["inputs"][0]["shape"] == [None, 50, 6]
    assert info["inputs"][0]["quantization"]["scale"] > 0


def test_model_run_writes_outputs_keyed_by_name(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 50, 6)).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    result = _edgefleet(
        "model",
        "run",
        str(DEMO_TFLITE),
        "--input",
        str(tmp_path / "in.npy"),
        "--output",
        str(tmp_path / "o.npz"),
    )
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "o.npz") as out:
        (name,) = out.files
        assert out[name].shape == (5, 4)
        assert out[name].dtype == np.float32
    assert name in result.stdout


def test_model_errors_exit_one_without_traceback(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"\x08garbage")
    for args in (
        ("model", "inspect", str(corrupt)),
        ("model", "inspect", str(FIXTURES / "flex_op.tflite")),
        ("model", "inspect", str(tmp_path / "model.h5")),
    ):
        result = _edgefleet(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.count("error: ") == 1
        assert "hint:" in result.stderr
        assert "Traceback" not in result.stderr


def test_model_help_lists_subcommands() -> None:
    result = _edgefleet("model", "--help")
    assert result.returncode == 0
    for command in ("inspect", "run", "bench"):
        assert command in result.stdout
