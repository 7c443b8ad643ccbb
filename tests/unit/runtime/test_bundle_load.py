"""load_bundle integrity checks, safe tar extraction, preprocess and interpret.

Uses copies of the shipped bundle files; no model is loaded here (see tests/integration/models).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.errors import BundleError, ModelInputError
from edgefleet.runtime.bundle import Bundle, load_bundle, sha256_file
from edgefleet.runtime.bundle_build import npz_bytes, write_tar

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "bundles" / "basicmotions-edge-onnx"


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SHIPPED, tmp_path / "bundle"))


def manifest_of(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((path / "manifest.json").read_text())
    return data


def test_loads_a_directory(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    assert b.manifest.name == "basicmotions-edge-onnx"
    assert b.model_path == bundle_dir / "basicmotions-int8.onnx"
    assert b.canary_inputs().shape == (4, 50, 6)
    assert "basicmotions-edge-onnx" in repr(b)
    assert load_bundle(bundle_dir / "manifest.json").path == bundle_dir


def test_missing_path_and_non_bundle_files(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\0" * 10)
    with pytest.raises(BundleError, match="neither a directory nor a tar"):
        load_bundle(junk)
    with pytest.raises(BundleError, match=r"has no manifest\.json"):
        load_bundle(tmp_path)


def test_hash_mismatch_is_reported(bundle_dir: Path) -> None:
    model = bundle_dir / "basicmotions-int8.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert "failed its integrity check" in info.value.message
    assert any("sha256" in p for p in info.value.problems)
    assert info.value.hint


def test_size_mismatch_and_missing_file_are_all_listed(bundle_dir: Path) -> None:
    with (bundle_dir / "basicmotions-int8.onnx").open("ab") as fh:
        fh.write(b"x")
    (bundle_dir / "canary.npz").unlink()
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    problems = info.value.problems
    assert len(problems) == 2
    assert "bytes; manifest says" in problems[0]
    assert "canary file 'canary.npz' is missing" in problems[1]
    assert "canary.npz" in str(info.value)


def test_invalid_manifest_in_a_bundle(bundle_dir: Path) -> None:
    data = manifest_of(bundle_dir)
    data["version"] = "one"
    data["surprise"] = True
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert sorted(p.split(":")[0] for p in info.value.problems) == ["surprise", "version"]


def test_tar_round_trip_uses_a_cache(bundle_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar"
    write_tar(bundle_dir, archive)
    cache = tmp_path / "cache"
    first = load_bundle(archive, cache_dir=cache)
    second = load_bundle(archive, cache_dir=cache)
    assert first.path == second.path
    assert first.path.parent == cache
    assert first.source == archive
    assert sha256_file(first.model_path) == first.manifest.model.sha256


def test_tampered_cache_is_extracted_again(bundle_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar"
    write_tar(bundle_dir, archive)
    cache = tmp_path / "cache"
    first = load_bundle(archive, cache_dir=cache)
    first.model_path.write_bytes(b"tampered")
    second = load_bundle(archive, cache_dir=cache)
    assert sha256_file(second.model_path) == second.manifest.model.sha256


def test_unwritable_cache_dir_is_a_bundle_error(bundle_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar"
    write_tar(bundle_dir, archive)
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(BundleError, match="cannot extract") as info:
        load_bundle(archive, cache_dir=blocker / "cache")
    assert "writable cache_dir" in (info.value.hint or "")


def test_tar_with_one_top_level_folder(bundle_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "nested.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(bundle_dir, arcname="basicmotions")
    b = load_bundle(archive, cache_dir=tmp_path / "cache")
    assert b.path.name == "basicmotions"


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        ok = tarfile.TarInfo("manifest.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return archive


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/abs.txt", "a/../../escape.txt"])
def test_tar_traversal_is_refused(tmp_path: Path, name: str) -> None:
    archive = _tar_with(tmp_path, tarfile.TarInfo(name), b"pwned")
    cache = tmp_path / "cache"
    with pytest.raises(BundleError) as info:
        load_bundle(archive, cache_dir=cache)
    assert "refusing to extract" in info.value.message
    assert "outside the bundle" in info.value.problems[0]
    assert not (tmp_path / "escape.txt").exists()
    assert not list(cache.rglob("*.txt"))


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_tar_links_and_devices_are_refused(tmp_path: Path, kind: bytes) -> None:
    member = tarfile.TarInfo("model.onnx")
    member.type = kind
    member.linkname = "/etc/passwd"
    archive = _tar_with(tmp_path, member)
    with pytest.raises(BundleError) as info:
        load_bundle(archive, cache_dir=tmp_path / "cache")
    assert "only regular files are allowed" in info.value.problems[0]


def test_truncated_tar_is_a_bundle_error(bundle_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar"
    write_tar(bundle_dir, archive)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[:3000])
    with pytest.raises(BundleError):
        load_bundle(cut, cache_dir=tmp_path / "cache")


def test_tar_without_manifest(tmp_path: Path) -> None:
    archive = tmp_path / "empty.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("readme.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(BundleError, match=r"holds no manifest\.json"):
        load_bundle(archive, cache_dir=tmp_path / "cache")


def test_npz_bytes_is_deterministic_and_loadable() -> None:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    data = npz_bytes({"inputs": arr})
    assert data == npz_bytes({"inputs": arr.copy()})
    with np.load(io.BytesIO(data)) as loaded:
        assert np.array_equal(loaded["inputs"], arr)


# --------------------------------------------------------------------------- preprocess/interpret


@pytest.fixture
def bundle(bundle_dir: Path) -> Bundle:
    return load_bundle(bundle_dir)


def test_preprocess_normalizes_per_channel(bundle: Bundle) -> None:
    prep = bundle.manifest.preprocessing
    raw = np.tile(np.asarray(prep.mean, np.float32) + np.asarray(prep.std, np.float32), (2, 50, 1))
    out = bundle.preprocess(raw)
    assert out.dtype == np.float32
    assert out.shape == (2, 50, 6)
    assert np.allclose(out, 1.0, atol=1e-5)
    assert bundle.preprocess(raw[0]).shape == (1, 50, 6)


@pytest.mark.parametrize("shape", [(2, 49, 6), (2, 50, 5), (50,), (1, 2, 50, 6)])
def test_preprocess_rejects_wrong_shapes(bundle: Bundle, shape: tuple[int, ...]) -> None:
    with pytest.raises(ModelInputError) as info:
        bundle.preprocess(np.zeros(shape, np.float32))
    assert info.value.expected == "(N, 50, 6)"
    assert "window_length=50" in (info.value.hint or "")


def test_preprocess_matches_per_channel_formula_exactly(bundle: Bundle) -> None:
    prep = bundle.manifest.preprocessing
    raw = np.random.default_rng(3).standard_normal((5, 50, 6)).astype(np.float32) * 4
    mean, std = np.asarray(prep.mean, np.float32), np.asarray(prep.std, np.float32)
    assert np.array_equal(bundle.preprocess(raw), (raw - mean) / std)
    assert bundle.preprocess(np.zeros((0, 50, 6), np.float32)).shape == (0, 50, 6)


def test_interpret_batch_gives_the_same_answers_as_columns(bundle: Bundle) -> None:
    rows = np.random.default_rng(4).random((9, 4)).astype(np.float32)
    probs = rows / rows.sum(axis=1, keepdims=True)
    for outputs in (probs, rows * 5 - 2):  # probabilities, then logits
        batch = bundle.interpret_batch({"probabilities": outputs})
        preds = bundle.interpret({"probabilities": outputs})
        assert len(batch) == 9
        assert batch.labels == [p.label for p in preds]
        assert batch.scores == [p.score for p in preds]
        assert all(type(score) is float for score in batch.scores)
        assert np.array_equal(batch.values, outputs)
    best = probs.argmax(axis=1)
    expected = [bundle.manifest.labels[i] for i in best]
    assert bundle.interpret_batch({"probabilities": probs}).labels == expected
    empty = bundle.interpret_batch({"probabilities": np.zeros((0, 4), np.float32)})
    assert (empty.labels, empty.scores, empty.predictions()) == ([], [], [])


def test_check_outputs_names_a_wrong_answer_count_or_width(bundle: Bundle) -> None:
    bundle.check_outputs({"probabilities": np.zeros((5, 4), np.float32)}, 5)  # fits: no error
    with pytest.raises(ModelInputError, match="model gave 4 answers for a batch of 5 windows") as short:
        bundle.check_outputs({"probabilities": np.zeros((4, 4), np.float32)}, 5)
    assert (short.value.expected, short.value.got) == ("5", "4")
    with pytest.raises(ModelInputError, match="3 output values per window but 4 labels"):
        bundle.check_outputs({"probabilities": np.zeros((5, 3), np.float32)}, 5)
    with pytest.raises(ModelInputError, match="not among"):
        bundle.check_outputs({"a": np.zeros((5, 4)), "b": np.zeros((5, 4))}, 5)
    # a shape that passed once passes at once; a known-good shape for another count still fails
    bundle.check_outputs({"probabilities": np.ones((5, 4), np.float32)}, 5)
    with pytest.raises(ModelInputError, match="model gave 5 answers for a batch of 6 windows"):
        bundle.check_outputs({"probabilities": np.zeros((5, 4), np.float32)}, 6)
    with pytest.raises(ModelInputError, match="3 output values per window"):  # failures are not kept
        bundle.check_outputs({"probabilities": np.zeros((5, 3), np.float32)}, 5)


def test_interpret_classification(bundle: Bundle) -> None:
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.05, 0.05, 0.05, 0.85]], np.float32)
    preds = bundle.interpret({"probabilities": probs})
    assert [p.label for p in preds] == ["Running", "Badminton"]
    assert [p.score for p in preds] == pytest.approx([0.7, 0.85])
    assert np.array_equal(preds[0].values, probs[0])


def test_interpret_turns_logits_into_probabilities(bundle: Bundle) -> None:
    logits = np.array([[2.0, 0.0, -1.0, 0.0]], np.float32)
    (pred,) = bundle.interpret({"only": logits})
    assert pred.label == "Standing"
    expected = np.exp(2.0) / (np.exp(2.0) + 2 + np.exp(-1.0))
    assert pred.score == pytest.approx(expected, rel=1e-5)


def test_interpret_errors(bundle: Bundle) -> None:
    with pytest.raises(ModelInputError, match="labels"):
        bundle.interpret({"probabilities": np.zeros((1, 3), np.float32)})
    with pytest.raises(ModelInputError, match="not among"):
        bundle.interpret({"a": np.zeros((1, 4)), "b": np.zeros((1, 4))})


def test_interpret_regression(bundle_dir: Path) -> None:
    data = manifest_of(bundle_dir)
    data.update(task="regression", labels=[], canary=[], canary_file=None, reference=None)
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    b = load_bundle(bundle_dir)
    preds = b.interpret({"probabilities": np.array([[1.5, -2.0, 0.0, 3.0]], np.float32)})
    assert preds[0].label is None
    assert preds[0].score is None
    assert preds[0].values.tolist() == [1.5, -2.0, 0.0, 3.0]
    assert b.canary_inputs().shape == (0, 50, 6)


def test_unreadable_canary_file(bundle_dir: Path) -> None:
    bad = npz_bytes({"not_inputs": np.zeros(3, np.float32)})
    (bundle_dir / "canary.npz").write_bytes(bad)
    data = manifest_of(bundle_dir)
    data["canary_file"] = {
        "path": "canary.npz",
        "sha256": sha256_file(bundle_dir / "canary.npz"),
        "size_bytes": len(bad),
    }
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="cannot read canary inputs"):
        load_bundle(bundle_dir).canary_inputs()


_SEGMENTS = st.sampled_from(["..", ".", "a", "b", "", "manifest.json", "~", "..."])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(_SEGMENTS, min_size=1, max_size=5),
    absolute=st.booleans(),
)
def test_no_member_name_writes_outside_the_cache(tmp_path: Path, parts: list[str], absolute: bool) -> None:
    name = ("/" if absolute else "") + "/".join(parts)
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    archive = work / "fuzz.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"fuzz!"))
    cache = work / "cache"
    before = set(tmp_path.parent.iterdir())
    absolute_target = Path(name)
    existed = absolute_target.exists()
    with contextlib.suppress(BundleError):
        load_bundle(archive, cache_dir=cache)
    written = [p for p in work.rglob("*") if p.is_file() and p != archive]
    assert all(cache in p.parents for p in written)
    assert set(tmp_path.parent.iterdir()) == before
    if absolute:
        assert absolute_target.exists() == existed
