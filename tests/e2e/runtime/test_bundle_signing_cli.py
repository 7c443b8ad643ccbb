"""``edgefleet keys generate`` / ``bundle sign`` / ``bundle verify --trust`` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.agent.agentproc import demo_bundle, run_cli

pytestmark = pytest.mark.e2e


def test_generate_sign_verify_and_every_refusal(tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(demo_bundle(), tmp_path / "bundle"))
    made = run_cli("keys", "generate", "--out", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    assert "key id" in made.stdout
    run_cli("keys", "generate", "--out", str(tmp_path / "other"))
    private, public = tmp_path / "keys" / "bundle-signing.key", tmp_path / "keys" / "bundle-signing.pub"

    def verify() -> tuple[int, str]:
        out = run_cli("bundle", "verify", str(bundle), "--no-canary", "--trust", str(public))
        return out.returncode, out.stdout + out.stderr

    code, text = verify()
    assert code != 0
    assert "error: " in text
    assert "unsigned" in text

    signed = run_cli("bundle", "sign", str(bundle), "--key", str(private))
    assert signed.returncode == 0, signed.stderr
    code, text = verify()
    assert code == 0, text
    assert "signature: ok" in text

    run_cli("bundle", "sign", str(bundle), "--key", str(tmp_path / "other" / "bundle-signing.key"))
    code, text = verify()
    assert code != 0
    assert "error: " in text
    assert "unknown key" in text

    run_cli("bundle", "sign", str(bundle), "--key", str(private))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    code, text = verify()
    assert code != 0
    assert "error: " in text
    assert "bad signature" in text

    shutil.rmtree(bundle)
    shutil.copytree(demo_bundle(), bundle)
    run_cli("bundle", "sign", str(bundle), "--key", str(private))
    model = next(bundle.glob("*.tflite"))
    model.write_bytes(model.read_bytes()[:-16])
    code, text = verify()
    assert code != 0
    assert "error: " in text
    assert "failed its integrity check" in text

    missing = run_cli("bundle", "verify", str(bundle), "--trust", str(tmp_path / "nope.pub"))
    assert missing.returncode != 0
    assert "error: cannot read trusted key" in missing.stderr
