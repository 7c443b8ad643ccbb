"""A/B model slots: staging, the pointer, rollback, and a crash at every step of a switch.

The crash is simulated by a hook that raises at the step (the files on disk are exactly as a
kill there leaves them; the real SIGKILL of a real agent is in tests/e2e/agent/test_agent_ota_kill.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.agent.ota_slots import SlotPointer, SlotStore
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_signing import generate_keys, load_trusted_keys
from tests.support.ota_bundles import DEMO, make_version


class CrashError(Exception):
    pass


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("versions")
    private, public = generate_keys(root / "keys")
    return {
        "pub": public,
        "1.1.0": make_version(root / "v110", "1.1.0", private),
        "1.2.0": make_version(root / "v120", "1.2.0", private),
    }


def configured() -> Bundle:
    return load_bundle(DEMO)


def start_version(store: SlotStore, versions: dict[str, Path], tmp_path: Path) -> str:
    """What an agent starting now would serve: recover, then resolve (as the service does)."""
    store.recover()
    trusted = load_trusted_keys([versions["pub"]])
    return str(store.resolve(configured, trusted, tmp_path / "cache").manifest.version)


def install(store: SlotStore, bundle: Path, version: str) -> None:
    slot = store.stage(bundle)
    store.activate(slot, version)
    store.commit()


def test_without_a_pointer_the_configured_bundle_serves(tmp_path: Path, versions: dict[str, Path]) -> None:
    store = SlotStore(tmp_path / "models")
    assert store.read() == SlotPointer()
    assert start_version(store, versions, tmp_path) == "1.0.0"


def test_install_commit_and_rollback(tmp_path: Path, versions: dict[str, Path]) -> None:
    store = SlotStore(tmp_path / "models")
    install(store, versions["1.1.0"], "1.1.0")
    assert store.read().active == "a"
    assert store.read().previous is None
    assert start_version(store, versions, tmp_path) == "1.1.0"
    install(store, versions["1.2.0"], "1.2.0")
    assert (store.read().active, store.read().previous) == ("b", "a")
    assert start_version(store, versions, tmp_path) == "1.2.0"
    store.rollback()
    assert start_version(store, versions, tmp_path) == "1.1.0"
    # The third install replaces the slot that is not active: the rolled-back one.
    assert store.target_slot() == "b"


def test_first_rollback_goes_to_the_configured_bundle(tmp_path: Path, versions: dict[str, Path]) -> None:
    store = SlotStore(tmp_path / "models")
    install(store, versions["1.1.0"], "1.1.0")
    store.rollback()
    assert store.read().active is None
    assert start_version(store, versions, tmp_path) == "1.0.0"
    # The next install keeps the rolled-back slot a as the previous one... and goes to b.
    assert store.target_slot() == "b"


def test_uncommitted_activation_is_rolled_back_at_start(tmp_path: Path, versions: dict[str, Path]) -> None:
    store = SlotStore(tmp_path / "models")
    install(store, versions["1.1.0"], "1.1.0")
    store.activate(store.stage(versions["1.2.0"]), "1.2.0")  # killed during probation: no commit
    assert "restarted during the probation of slot b" in (store.recover() or "")
    assert store.read().active == "a"
    assert store.read().committed
    assert start_version(store, versions, tmp_path) == "1.1.0"


def test_tampered_active_slot_falls_back(tmp_path: Path, versions: dict[str, Path]) -> None:
    store = SlotStore(tmp_path / "models")
    install(store, versions["1.1.0"], "1.1.0")
    install(store, versions["1.2.0"], "1.2.0")
    canary = store.slot_path("b") / "canary.npz"
    canary.write_bytes(canary.read_bytes()[:-10])
    seen: list[str] = []
    version = store.resolve(
        configured,
        load_trusted_keys([versions["pub"]]),
        tmp_path / "c",
        on_event=lambda k, m, d: seen.append(m),
    ).manifest.version
    assert version == "1.1.0"
    assert "model slot b refused" in seen[0]


def test_unreadable_pointer_means_the_configured_bundle(tmp_path: Path, versions: dict[str, Path]) -> None:
    store = SlotStore(tmp_path / "models")
    install(store, versions["1.1.0"], "1.1.0")
    store.pointer_path.write_text("{not json")
    assert start_version(store, versions, tmp_path) == "1.0.0"
    store.pointer_path.write_text(json.dumps({"format": "other"}))
    assert start_version(store, versions, tmp_path) == "1.0.0"


STEPS_BEFORE_SWITCH = [
    "stage_partial",
    "stage_copied",
    "stage_old_moved",
    "staged",
    "activate_pointer_written",
]
STEPS_UNCOMMITTED = ["activate_pointer_renamed", "commit_pointer_written"]
STEPS_COMMITTED = ["commit_pointer_renamed"]


@pytest.mark.parametrize("step", STEPS_BEFORE_SWITCH + STEPS_UNCOMMITTED + STEPS_COMMITTED)
def test_crash_at_every_step_leaves_a_valid_model(
    tmp_path: Path, versions: dict[str, Path], step: str
) -> None:
    """1.2.0 active in b, 1.1.0 previous in a; a third install goes into a, replacing it, so the
    step that moves an old slot away is exercised too."""
    store = SlotStore(tmp_path / "models")
    install(store, versions["1.1.0"], "1.1.0")
    install(store, versions["1.2.0"], "1.2.0")  # active b, previous a

    def hook(name: str) -> None:
        if name == step:
            raise CrashError(name)

    crashing = SlotStore(tmp_path / "models", hook=hook)

    def switch() -> None:
        slot = crashing.stage(versions["1.1.0"])  # staged into a (the previous slot)
        crashing.activate(slot, "1.1.0")
        crashing.commit()

    with pytest.raises(CrashError):
        switch()
    after = start_version(SlotStore(tmp_path / "models"), versions, tmp_path)
    # Before the pointer names the new slot, and while it is uncommitted, the agent comes back on
    # the model that was active (1.2.0); only a committed switch serves the new one.
    assert after == ("1.1.0" if step in STEPS_COMMITTED else "1.2.0")
