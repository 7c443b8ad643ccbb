"""Signed bundles against the real demo bundle: each way a signature can fail is refused by name."""

from __future__ import annotations

import base64
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.errors import BundleError
from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.bundle_signing import (
    SIGNATURE_NAME,
    TrustedKey,
    generate_keys,
    key_id,
    load_trusted_keys,
    sign_bundle,
)

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[3] / "models" / "bundles" / "basicmotions-edge-tflite"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    if not (DEMO / "manifest.json").is_file():
        pytest.skip("demo bundle not built (models/build_demo.py --stage bundles)")
    return Path(shutil.copytree(DEMO, tmp_path / "bundle"))


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, list[TrustedKey]]:
    private, public = generate_keys(tmp_path / "keys")
    return private, load_trusted_keys([public])


def refusal(path: Path, trusted: list[TrustedKey], cache: Path) -> BundleError:
    with pytest.raises(BundleError) as caught:
        load_bundle(path, cache_dir=cache, trusted_keys=trusted)
    return caught.value


def test_keys_are_ed25519_pem_and_the_private_one_is_private(tmp_path: Path) -> None:
    private, public = generate_keys(tmp_path / "k")
    assert private.stat().st_mode & 0o077 == 0
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(BundleError, match="already exists"):
        generate_keys(tmp_path / "k")


def test_a_signed_bundle_loads_and_an_unsigned_one_still_loads_without_trust(
    bundle: Path, keys: tuple[Path, list[TrustedKey]], tmp_path: Path
) -> None:
    private, trusted = keys
    assert load_bundle(bundle).manifest.name  # no keys configured: today's bundles keep loading
    assert sign_bundle(bundle, private) == trusted[0].key_id
    loaded = load_bundle(bundle, cache_dir=tmp_path / "c", trusted_keys=trusted)
    assert loaded.manifest.version


def test_unsigned_is_refused(bundle: Path, keys: tuple[Path, list[TrustedKey]], tmp_path: Path) -> None:
    error = refusal(bundle, keys[1], tmp_path / "c")
    assert error.problems == ["unsigned"]
    assert "unsigned" in error.message


def test_unknown_key_is_refused(bundle: Path, keys: tuple[Path, list[TrustedKey]], tmp_path: Path) -> None:
    other, _ = generate_keys(tmp_path / "other")
    sign_bundle(bundle, other)
    error = refusal(bundle, keys[1], tmp_path / "c")
    assert error.problems == ["unknown key"]
    assert keys[1][0].key_id in error.message


def test_changed_manifest_is_a_bad_signature(
    bundle: Path, keys: tuple[Path, list[TrustedKey]], tmp_path: Path
) -> None:
    sign_bundle(bundle, keys[0])
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["description"] = "tampered after signing"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    error = refusal(bundle, keys[1], tmp_path / "c")
    assert error.problems == ["bad signature"]


def test_a_forged_key_id_is_a_bad_signature(
    bundle: Path, keys: tuple[Path, list[TrustedKey]], tmp_path: Path
) -> None:
    # Signed by an attacker's key but claiming the trusted key's id.
    attacker = Ed25519PrivateKey.generate()
    document = {
        "format": "edgefleet-manifest-signature/1",
        "algorithm": "ed25519",
        "key_id": keys[1][0].key_id,
        "signature": base64.b64encode(attacker.sign((bundle / "manifest.json").read_bytes())).decode(),
    }
    assert key_id(attacker.public_key()) != keys[1][0].key_id
    (bundle / SIGNATURE_NAME).write_text(json.dumps(document))
    assert refusal(bundle, keys[1], tmp_path / "c").problems == ["bad signature"]


@pytest.mark.parametrize(
    "garbage", ["not json", "[]", '{"format": "other"}', '{"format": "edgefleet-manifest-signature/1"}']
)
def test_malformed_signature_file_is_refused(
    bundle: Path, keys: tuple[Path, list[TrustedKey]], tmp_path: Path, garbage: str
) -> None:
    (bundle / SIGNATURE_NAME).write_text(garbage)
    error = refusal(bundle, keys[1], tmp_path / "c")
    assert error.problems == ["bad signature"]
    assert "malformed" in error.message


def test_tampered_model_file_is_refused_though_the_signature_is_good(
    bundle: Path, keys: tuple[Path, list[TrustedKey]], tmp_path: Path
) -> None:
    sign_bundle(bundle, keys[0])
    model = next(bundle.glob("*.tflite"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    error = refusal(bundle, keys[1], tmp_path / "c")
    assert "integrity" in error.message
    assert any("sha256" in p for p in error.problems)


def test_sign_refuses_a_bundle_that_fails_its_integrity_check(
    bundle: Path, keys: tuple[Path, list[TrustedKey]]
) -> None:
    model = next(bundle.glob("*.tflite"))
    model.write_bytes(model.read_bytes() + b"x")
    with pytest.raises(BundleError, match="integrity"):
        sign_bundle(bundle, keys[0])
    assert not (bundle / SIGNATURE_NAME).exists()


def test_tar_bundles_are_signed_in_place(
    bundle: Path, keys: tuple[Path, list[TrustedKey]], tmp_path: Path
) -> None:
    archive = tmp_path / "bundle.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(bundle, arcname="basicmotions")
    assert refusal(archive, keys[1], tmp_path / "c1").problems == ["unsigned"]
    sign_bundle(archive, keys[0])
    sign_bundle(archive, keys[0])  # re-signing replaces, never duplicates
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names.count(f"basicmotions/{SIGNATURE_NAME}") == 1
    assert load_bundle(archive, cache_dir=tmp_path / "c2", trusted_keys=keys[1]).manifest.name
