"""``edgefleet model inspect|run|bench`` in-process through edgefleet.cli.main.main."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefleet.cli.main import main
from edgefleet.runtime import load_model
from tests.fixtures.runtime import onnx_models as om

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "runtime"


@pytest.fixture(scope="module")
def multi_io(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return om.multi_io_model(tmp_path_factory.mktemp("cli-models"))


def test_inspect_text_shows_tensors_quantization_and_hash(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "int8_full.tflite"
    assert main(["model", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    with load_model(path, warmup=False) as model:
        sha = model.info.sha256
    assert sha in out
    assert "litert" in out
    assert "window" in out
    assert "[?, 8, 3]" in out
    assert "scale=" in out
    assert "zero_point=" in out


def test_inspect_json_is_model_info(capsys: pytest.CaptureFixture[str], multi_io: Path) -> None:
    assert main(["model", "inspect", str(multi_io), "--json", "--provider", "cpu", "--threads", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "onnx"
    assert info["backend"] == "onnxruntime"
    assert [t["name"] for t in info["inputs"]] == ["a", "b"]
    assert info["inputs"][0]["shape"] == [None, 4]
    assert info["providers"] == ["CPUExecutionProvider"]
    assert len(info["sha256"]) == 64


def test_inspect_missing_file_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["model", "inspect", str(tmp_path / "nope.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "no such model file" in err
    assert "hint:" in err
    assert "Traceback" not in err


def test_run_npz_keyed_by_input_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, multi_io: Path
) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 2), np.float32)
    np.savez(tmp_path / "in.npz", a=a, b=b)
    out_path = tmp_path / "out.npz"
    assert (
        main(["model", "run", str(multi_io), "--input", str(tmp_path / "in.npz"), "--output", str(out_path)])
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    with np.load(out_path) as result:
        assert sorted(result.files) == ["joined", "total"]
        np.testing.assert_allclose(result["joined"], np.concatenate([a, b], axis=1))


@pytest.mark.parametrize("kind", ["npy", "npz-unnamed", "npz-named"])
def test_run_single_input_model(tmp_path: Path, kind: str) -> None:
    path = FIXTURES / "int8_full.tflite"
    x = np.random.default_rng(3).uniform(-1, 1, size=(3, 8, 3)).astype(np.float32)
    if kind == "npy":
        source = tmp_path / "in.npy"
        np.save(source, x)
    else:
        source = tmp_path / "in.npz"
        if kind == "npz-unnamed":
            np.savez(source, x)
        else:
            np.savez(source, window=x)
    out_path = tmp_path / "sub" / "out.npz"
    assert main(["model", "run", str(path), "--input", str(source), "--output", str(out_path)]) == 0
    with load_model(path) as model:
        expected = model.predict(x)["scores"]
    with np.load(out_path) as result:
        assert result.files == ["scores"]
        np.testing.assert_array_equal(result["scores"], expected)


def test_run_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, multi_io: Path) -> None:
    out = str(tmp_path / "out.npz")
    np.save(tmp_path / "one.npy", np.zeros((1, 4), np.float32))
    assert main(["model", "run", str(multi_io), "--input", str(tmp_path / "one.npy"), "--output", out]) == 1
    assert "np.savez" in capsys.readouterr().err

    np.savez(tmp_path / "wrong.npz", a=np.zeros((1, 4), np.float32))
    assert main(["model", "run", str(multi_io), "--input", str(tmp_path / "wrong.npz"), "--output", out]) == 1
    assert "missing input 'b'" in capsys.readouterr().err

    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["model", "run", str(multi_io), "--input", str(tmp_path / "bad.npz"), "--output", out]) == 1
    assert "cannot read the input file" in capsys.readouterr().err

    assert (
        main(["model", "run", str(multi_io), "--input", str(tmp_path / "absent.npz"), "--output", out]) == 1
    )
    assert "no such input file" in capsys.readouterr().err

    x = np.zeros((1, 8, 3), np.float32)
    x[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    tflite = str(FIXTURES / "float_dynamic.tflite")
    assert main(["model", "run", tflite, "--input", str(tmp_path / "nan.npy"), "--output", out]) == 1
    assert "NaN/inf" in capsys.readouterr().err
    assert (
        main(
            [
                "model",
                "run",
                tflite,
                "--input",
                str(tmp_path / "nan.npy"),
                "--output",
                out,
                "--nan-policy",
                "zero",
            ]
        )
        == 0
    )


def test_bench_calls_the_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIXTURES / "float_dynamic.tflite")
    code = main(["model", "bench", path, "--batch", "4", "--seconds", "0.2", "--threads", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert isinstance(report, dict)
    assert "float_dynamic.tflite" in json.dumps(report)
    assert main(["model", "bench", path, "--batch", "2", "--seconds", "0.2"]) == 0
    assert capsys.readouterr().out.strip()


def test_bench_passes_hop_and_push_chunk(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIXTURES / "float_dynamic.tflite")
    args = ["model", "bench", path, "--batch", "4", "--seconds", "0.2", "--hop", "3", "--push-chunk", "7"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["hop"] == 3
    assert report["push_chunk"] == 7


def test_bench_missing_model_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["model", "bench", str(tmp_path / "absent.onnx"), "--seconds", "0.1"]) == 1
    assert "no such model file" in capsys.readouterr().err


def test_bench_rejects_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["model", "bench", "m.tflite", "--batch", "0"])
    assert info.value.code == 2
    assert "expected a whole number >= 1" in capsys.readouterr().err
