"""Bad model files and bad inputs: every one is a clear ModelLoadError / ModelInputError with a hint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgefleet.errors import ModelError, ModelInputError, ModelLoadError
from edgefleet.runtime import load_model
from tests.fixtures.runtime import onnx_models as om

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "runtime"
TFLITE = FIXTURES / "float_dynamic.tflite"


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return om.float_model(tmp_path_factory.mktemp("onnx-errors"))


@pytest.fixture(params=["tflite", "onnx"])
def model_path(request: pytest.FixtureRequest, onnx_path: Path) -> Path:
    return TFLITE if request.param == "tflite" else onnx_path


def _load_error(path: Path) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    assert info.value.hint, "every load error carries a hint"
    assert info.value.path == str(path)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    error = _load_error(tmp_path / "absent.tflite")
    assert "no such model file" in error.message


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    assert "is a directory" in _load_error(folder).message


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    assert "empty (0 bytes)" in _load_error(path).message


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_corrupt_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(b"\x00garbage, not a model at all" * 10)
    error = _load_error(path)
    assert f"not a valid {suffix} file" in error.message
    assert "corrupt" in (error.hint or "")


def test_truncated_tflite(tmp_path: Path) -> None:
    path = tmp_path / "truncated.tflite"
    path.write_bytes(TFLITE.read_bytes()[:300])
    assert "not a valid .tflite file" in _load_error(path).message


def test_unknown_extension_names_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "model.pb"
    shutil.copy(TFLITE, path)
    error = _load_error(path)
    assert "unknown model format '.pb'" in error.message
    assert ".onnx" in error.message
    assert ".tflite" in error.message


def test_bad_load_options(onnx_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown nan_policy 'drop'"):
        load_model(onnx_path, nan_policy="drop")  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="threads must be at least 1"):
        load_model(onnx_path, threads=0)


def _window_input(path: Path) -> tuple[str, tuple[int, ...]]:
    return ("window", (2, 8, 3)) if path.suffix == ".tflite" else ("x", (2, 4))


def test_nan_rejected_by_default(model_path: Path) -> None:
    name, shape = _window_input(model_path)
    x = np.zeros(shape, np.float32)
    x[0, 1] = np.nan
    x[1, 0] = np.inf
    with load_model(model_path) as model, pytest.raises(ModelInputError) as info:
        model.predict(x)
    assert info.value.tensor == name
    assert f"'{name}'" in info.value.message
    assert "contains" in info.value.message
    assert info.value.got == f"{int((~np.isfinite(x)).sum())} non-finite"
    assert "nan_policy" in (info.value.hint or "")


def test_huge_finite_values_are_not_mistaken_for_inf(model_path: Path) -> None:
    _, shape = _window_input(model_path)
    x = np.full(shape, 1e30, np.float32)  # the sum of squares overflows; the values are finite
    with load_model(model_path) as model:
        out = next(iter(model.predict(x).values()))
    assert out.shape[0] == shape[0]


def test_non_contiguous_input_is_checked_and_run(model_path: Path) -> None:
    _, shape = _window_input(model_path)
    wide = np.zeros((shape[0] * 2, *shape[1:]), np.float32)
    view = wide[::2]  # a strided view, not C-contiguous
    with load_model(model_path) as model:
        expected = next(iter(model.predict(np.ascontiguousarray(view)).values()))
        np.testing.assert_array_equal(next(iter(model.predict(view).values())), expected)
        wide[2, 0] = np.inf  # row 1 of the view
        wide[1, 0] = np.nan  # not part of the view
        with pytest.raises(ModelInputError, match="contains") as info:
            model.predict(view)
        assert info.value.got == f"{int((~np.isfinite(view)).sum())} non-finite"


def test_nan_zero_policy_replaces_values(model_path: Path) -> None:
    _, shape = _window_input(model_path)
    clean = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    dirty = clean.copy()
    dirty[0, 0] = np.nan
    cleaned = clean.copy()
    cleaned[0, 0] = 0.0
    with load_model(model_path, nan_policy="zero") as model:
        got = next(iter(model.predict(dirty).values()))
        want = next(iter(model.predict(cleaned).values()))
    np.testing.assert_array_equal(got, want)
    assert np.isnan(dirty[0, 0]).all(), "the caller's array is never modified"


def test_nan_allow_policy_passes_values_on(model_path: Path) -> None:
    _, shape = _window_input(model_path)
    x = np.zeros(shape, np.float32)
    x[0] = np.nan
    with load_model(model_path, nan_policy="allow") as model:
        out = next(iter(model.predict(x).values()))
    assert np.isnan(out[0]).all()
    assert np.isfinite(out[1]).all()


def test_wrong_shape_names_tensor_and_shapes(model_path: Path) -> None:
    name, shape = _window_input(model_path)
    bad = np.zeros((*shape[:-1], shape[-1] + 1), np.float32)
    with load_model(model_path) as model:
        with pytest.raises(ModelInputError) as info:
            model.predict(bad)
        assert info.value.tensor == name
        assert info.value.expected is not None
        assert info.value.got is not None
        assert info.value.expected.startswith("[?, ")
        assert str(shape[-1] + 1) in info.value.got
        with pytest.raises(ModelInputError, match="add a batch axis"):
            model.predict(np.zeros(shape[1:], np.float32))


def test_wrong_dtype_names_tensor(model_path: Path) -> None:
    name, shape = _window_input(model_path)
    with load_model(model_path) as model, pytest.raises(ModelInputError) as info:
        model.predict(np.zeros(shape, np.complex64))
    assert info.value.tensor == name
    assert info.value.got == "complex64"
    assert info.value.expected == "float32"


def test_int8_model_rejects_nan_before_quantizing() -> None:
    x = np.zeros((1, 8, 3), np.float32)
    x[0, 0, 0] = np.nan
    with (
        load_model(FIXTURES / "int8_full.tflite") as model,
        pytest.raises(ModelInputError, match="1 NaN/inf"),
    ):
        model.predict(x)
    with load_model(FIXTURES / "int8_full.tflite", nan_policy="allow") as model:
        assert np.isfinite(model.predict(x)["scores"]).all()


def test_ragged_input_and_empty_batch(model_path: Path) -> None:
    with load_model(model_path) as model:
        name, shape = _window_input(model_path)
        with pytest.raises(ModelInputError, match="empty batch"):
            model.predict(np.zeros((0, *shape[1:]), np.float32))
        with pytest.raises(ModelInputError, match=f"'{name}'"):
            model.predict([[1.0, 2.0], [3.0]])  # type: ignore[arg-type]


def test_closed_model_refuses_to_predict(model_path: Path) -> None:
    model = load_model(model_path)
    model.close()
    model.close()  # idempotent
    _, shape = _window_input(model_path)
    with pytest.raises(ModelError, match="closed"):
        model.predict(np.zeros(shape, np.float32))
