"""Ed25519 signatures for model bundles: keys, ``manifest.sig``, verification against trusted keys.

The signature is detached and covers the exact bytes of ``manifest.json``; the manifest already
records every file's size and sha256, so a signed manifest plus the integrity check of
:func:`~edgefleet.runtime.bundle.load_bundle` vouch for the whole bundle. ``manifest.sig`` is
JSON (never a format that can run code on load) beside ``manifest.json``; bundles without it
keep loading wherever no key is trusted.

Keys are PEM files: PKCS#8 private keys (written with mode 0600) and SubjectPublicKeyInfo public
keys. A key's id is the first 16 hex digits of the sha256 of its raw 32 public bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgefleet.errors import BundleError

__all__ = [
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "SIGNATURE_FORMAT",
    "SIGNATURE_NAME",
    "SignatureInfo",
    "TrustedKey",
    "generate_keys",
    "key_id",
    "load_private_key",
    "load_trusted_keys",
    "sign_bundle",
    "verify_manifest_signature",
]

SIGNATURE_NAME = "manifest.sig"
SIGNATURE_FORMAT = "edgefleet-manifest-signature/1"
PRIVATE_KEY_NAME = "bundle-signing.key"
PUBLIC_KEY_NAME = "bundle-signing.pub"
_MANIFEST_NAME = "manifest.json"
_HINT_SIGN = "sign it with `edgefleet bundle sign BUNDLE --key PRIVATE_KEY` using a key the device trusts"


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    key: Ed25519PublicKey
    source: str


@dataclass(frozen=True)
class SignatureInfo:
    key_id: str
    source: str
    """The trusted key file that verified the signature."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keys(out_dir: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair into ``out_dir``; refuses to overwrite an existing one."""
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise BundleError(
                f"{path} already exists; not overwriting a signing key",
                hint="choose another --out directory, or move the old key away first",
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(
            f"cannot read signing key {path}: {exc}",
            hint="pass the private key written by `edgefleet keys generate` (bundle-signing.key)",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(
            f"signing key {path} is not an Ed25519 key", hint="create one with `edgefleet keys generate`"
        )
    return key


def load_trusted_keys(paths: Sequence[Path]) -> list[TrustedKey]:
    """Public keys from PEM files; BundleError naming a file that is missing or not an Ed25519 key."""
    keys: list[TrustedKey] = []
    for path in paths:
        try:
            key = serialization.load_pem_public_key(Path(path).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise BundleError(
                f"cannot read trusted key {path}: {exc}",
                hint="trusted keys are the .pub files written by `edgefleet keys generate`",
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise BundleError(
                f"trusted key {path} is not an Ed25519 public key", hint="use `edgefleet keys generate`"
            )
        keys.append(TrustedKey(key_id(key), key, str(path)))
    return keys


def _signature_document(private: Ed25519PrivateKey, manifest: bytes) -> bytes:
    document = {
        "format": SIGNATURE_FORMAT,
        "algorithm": "ed25519",
        "key_id": key_id(private.public_key()),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "signature": base64.b64encode(private.sign(manifest)).decode("ascii"),
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def sign_bundle(bundle: Path, private_key: Path) -> str:
    """Add (or replace) ``manifest.sig`` in a bundle directory or ``.tar``; returns the key id.

    The bundle is integrity-checked first, so only a bundle whose files match its manifest is signed.
    """
    from edgefleet.runtime.bundle import load_bundle

    private = load_private_key(private_key)
    with tempfile.TemporaryDirectory(prefix="edgefleet-sign-") as cache:
        loaded = load_bundle(bundle, cache_dir=cache)
        manifest = (loaded.path / _MANIFEST_NAME).read_bytes()
        root_in_archive = loaded.path.relative_to(Path(cache).resolve()) if bundle.is_file() else None
    document = _signature_document(private, manifest)
    if root_in_archive is None:
        tmp = bundle / (SIGNATURE_NAME + ".tmp")
        tmp.write_bytes(document)
        os.replace(tmp, bundle / SIGNATURE_NAME)
    else:
        _replace_in_tar(bundle, root_in_archive, document)
    return key_id(private.public_key())


def _replace_in_tar(archive: Path, extracted_root: Path, document: bytes) -> None:
    # The extraction folder is "<stem>-<hash>"; members sit under the archive's own top folder, if any.
    inner = PurePosixPath(*extracted_root.parts[1:])
    name = str(inner / SIGNATURE_NAME) if inner.parts else SIGNATURE_NAME
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(archive, "r:*") as src, tarfile.open(tmp, "w") as out:
        for member in src.getmembers():
            if member.name.lstrip("./") == name:
                continue
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo(name)
        info.size = len(document)
        info.mode = 0o644
        out.addfile(info, io.BytesIO(document))
    os.replace(tmp, archive)


def verify_manifest_signature(
    root: Path, trusted: Sequence[TrustedKey], *, source: str, manifest: bytes | None = None
) -> SignatureInfo:
    """Check ``root/manifest.sig`` over the manifest bytes against ``trusted``; BundleError saying why not.

    ``manifest``: the bytes the caller goes on to parse (default: read ``root/manifest.json``),
    so what is verified is exactly what is used.
    """
    sig_path = root / SIGNATURE_NAME
    if not sig_path.is_file():
        raise BundleError(
            f"bundle {source} is unsigned (no {SIGNATURE_NAME}); a signature by a trusted key is required",
            path=source,
            problems=["unsigned"],
            hint=_HINT_SIGN,
        )
    try:
        document = json.loads(sig_path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
            raise ValueError(f"format is not {SIGNATURE_FORMAT!r}")
        signature = base64.b64decode(str(document["signature"]), validate=True)
        signer = str(document["key_id"])
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise BundleError(
            f"bundle {source} has a malformed {SIGNATURE_NAME}: {exc}",
            path=source,
            problems=["bad signature"],
            hint=_HINT_SIGN,
        ) from None
    matching = [k for k in trusted if k.key_id == signer]
    if not matching:
        known = ", ".join(k.key_id for k in trusted) or "none"
        raise BundleError(
            f"bundle {source} is signed by unknown key {signer} (trusted: {known})",
            path=source,
            problems=["unknown key"],
            hint="add the signer's public key to [ota] trusted_keys, or sign with a trusted key",
        )
    if manifest is None:
        manifest = (root / _MANIFEST_NAME).read_bytes()
    for key in matching:
        try:
            key.key.verify(signature, manifest)
        except InvalidSignature:
            continue
        return SignatureInfo(key_id=key.key_id, source=key.source)
    raise BundleError(
        f"bundle {source} has a bad signature: {_MANIFEST_NAME} was changed after signing, or the"
        f" signature was not made by key {signer}",
        path=source,
        problems=["bad signature"],
        hint="rebuild and re-sign the bundle from a trusted source",
    )
