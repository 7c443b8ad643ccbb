"""The real CLI keeps LiteRT's `INFO: Created ... XNNPACK delegate` line out unless --verbose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

MODEL = Path(__file__).resolve().parents[3] / "models" / "demo" / "basicmotions-int8.tflite"


def edgefleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefleet", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_model_commands_are_quiet_by_default(tmp_path: Path) -> None:
    inspect = edgefleet("model", "inspect", str(MODEL))
    assert inspect.returncode == 0, inspect.stderr
    assert "XNNPACK" not in inspect.stderr + inspect.stdout
    verify = edgefleet("bundle", "verify", str(MODEL.parents[1] / "bundles" / "basicmotions-edge-tflite"))
    assert verify.returncode == 0, verify.stderr
    assert "XNNPACK" not in verify.stderr + verify.stdout


def test_verbose_shows_the_runtime_chatter() -> None:
    inspect = edgefleet("--verbose", "model", "inspect", str(MODEL))
    assert inspect.returncode == 0, inspect.stderr
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU" in inspect.stderr
