"""Backend registry: plugins by type, a missing runtime logged and named, the tflite_runtime fallback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from edgefleet.agent.config import ModelConfig
from edgefleet.errors import ModelLoadError
from edgefleet.runtime import BACKENDS, available_backends, load_model
from edgefleet.runtime.backends import BACKEND_PLUGINS, BackendName, litert
from tests.fixtures.runtime import onnx_models as om

pytestmark = pytest.mark.integration

TFLITE = Path(__file__).resolve().parents[2] / "fixtures" / "runtime" / "float_dynamic.tflite"


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    available_backends.cache_clear()
    yield
    available_backends.cache_clear()


def test_registry_lists_both_backends() -> None:
    assert set(BACKENDS) == {"litert", "onnxruntime"}
    versions = available_backends()
    assert versions["litert"] is not None
    assert versions["onnxruntime"] is not None


def test_the_config_backend_choices_come_from_the_registry() -> None:
    assert set(get_args(BackendName)) == {"auto", *BACKENDS}
    assert {cls.type: cls for cls in BACKEND_PLUGINS} == BACKENDS
    for name in ("auto", *BACKENDS):
        assert ModelConfig(bundle=Path("b"), backend=name).backend == name
    with pytest.raises(ValidationError, match="'auto', 'litert' or 'onnxruntime'"):
        ModelConfig(bundle=Path("b"), backend="torch")


def test_missing_litert_is_logged_and_named_on_load(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_registry: None, tmp_path: Path
) -> None:
    monkeypatch.setattr(litert, "_RUNTIMES", (("no_such_litert.interpreter", "no-such-litert"),))
    with caplog.at_level(logging.INFO):
        assert available_backends()["litert"] is None
    assert "litert backend unavailable" in caplog.text
    with pytest.raises(ModelLoadError) as info:
        load_model(TFLITE)
    assert "ai-edge-litert" in (info.value.hint or "")
    assert "numpy<2" in (info.value.hint or "")
    # the other backend is unaffected
    with load_model(om.float_model(tmp_path)) as model:
        assert model.predict(np.zeros((1, 4), np.float32))["probs"].shape == (1, 3)


def test_missing_onnxruntime_is_named_on_load(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None, tmp_path: Path
) -> None:
    path = om.float_model(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    assert available_backends()["onnxruntime"] is None
    with pytest.raises(ModelLoadError, match="no onnxruntime runtime is installed") as info:
        load_model(path)
    assert "pip install onnxruntime" in (info.value.hint or "")
    with load_model(TFLITE) as model:
        assert model.info.backend == "litert"


def test_falls_back_to_the_next_litert_flavour(monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> None:
    # The same lookup that finds tflite_runtime when ai_edge_litert is absent.
    monkeypatch.setattr(
        litert,
        "_RUNTIMES",
        (("no_such_litert.interpreter", "no-such-litert"), ("ai_edge_litert.interpreter", "ai-edge-litert")),
    )
    with load_model(TFLITE) as model:
        assert model.info.runtime.startswith("ai-edge-litert")
