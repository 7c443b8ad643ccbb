"""A file named .npz/.npy that is not one is named for what it is, never "pickled data"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefleet.cli.main import main
from edgefleet.cli.numpy_files import check_numpy_file
from edgefleet.errors import EdgefleetError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "content", "found"),
    [
        ("inputs.npz", b"hello world\n1,2,3\n", "it looks like text, starting 'hello world'"),
        ("inputs.npy", b"0.1 0.2 0.3\n", "it looks like text, starting '0.1 0.2 0.3'"),
        ("inputs.npz", b"", "it is empty"),
        ("inputs.npz", b"\x00\xff\x10\x80binary", "it starts with the bytes 00 ff 10 80"),
    ],
)
def test_what_the_file_really_is_is_named(tmp_path: Path, name: str, content: bytes, found: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(EdgefleetError) as info:
        check_numpy_file(path)
    assert found in str(info.value)
    assert "pickle" not in str(info.value)
    assert info.value.hint


def test_real_numpy_files_pass(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    np.savez(tmp_path / "empty.npz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    for name in ("a.npz", "empty.npz", "a.npy"):
        check_numpy_file(tmp_path / name)


def test_model_run_reports_a_text_file_named_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = Path(__file__).resolve().parents[3] / "models" / "demo" / "basicmotions-int8.onnx"
    text = tmp_path / "inputs.npz"
    text.write_text("not numpy at all\n")
    code = main(["model", "run", str(model), "--input", str(text), "--output", str(tmp_path / "o.npz")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: cannot read the input file: {text} is not an .npz file (a zip archive" in err
    assert "pickled" not in err
