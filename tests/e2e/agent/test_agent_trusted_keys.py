"""``[ota] trusted_keys`` in the real agent: an unsigned bundle is never loaded, a signed one serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgefleet.runtime.bundle_signing import generate_keys, sign_bundle
from tests.e2e.agent.agentproc import (
    AgentProcess,
    count_results,
    demo_bundle,
    events,
    replay_source,
    write_config,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def config_with_trust(tmp_path: Path, bundle: Path, public: Path) -> Path:
    path = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        sources=[replay_source(realtime=True, speed=20.0)],
        bundle=bundle,
    )
    path.write_text(path.read_text() + f"\n[ota]\ntrusted_keys = [{json.dumps(str(public))}]\n")
    return path


def test_unsigned_bundle_is_refused_before_loading(tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(demo_bundle(), tmp_path / "bundle"))
    _, public = generate_keys(tmp_path / "keys")
    db = tmp_path / "state" / "store.db"
    with AgentProcess(config_with_trust(tmp_path, bundle, public), tmp_path / "agent.log") as agent:
        failed = wait_until(lambda: events(db, "model_load_failed"), what="the refusal event")
        assert "unsigned" in failed[0]["message"], failed
        assert count_results(db) == 0
        assert agent.terminate_and_wait() == 0, agent.output()
    assert count_results(db) == 0


def test_signed_bundle_serves(tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(demo_bundle(), tmp_path / "bundle"))
    private, public = generate_keys(tmp_path / "keys")
    sign_bundle(bundle, private)
    db = tmp_path / "state" / "store.db"
    with AgentProcess(config_with_trust(tmp_path, bundle, public), tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) >= 10, what="results from the signed bundle")
        assert agent.terminate_and_wait() == 0, agent.output()
    assert events(db, "model_load_failed") == []
