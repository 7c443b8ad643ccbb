"""The installer on a real model slot: every bad bundle is refused while the old model keeps serving.

The model slot serves the signed demo bundle 1.0.0; each test offers a real bad bundle and checks
the final ``ota/progress`` state and its reason, that the slot still serves 1.0.0 and still
answers a batch, and that no slot pointer was written.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.config import OtaConfig
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.model_slot import ModelSlot
from edgefleet.agent.ota_install import LocalOffer, OtaInstaller
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_signing import generate_keys
from tests.support.ota_bundles import (
    WATCH,
    custom_op_model,
    hanging_model,
    make_version,
    onnx_candidate,
)


@dataclass
class Progress:
    states: list[tuple[str, str | None]] = field(default_factory=list)

    def __call__(
        self,
        state: str,
        progress: float = 0.0,
        detail: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.states.append((state, detail))

    @property
    def final(self) -> tuple[str, str]:
        state, detail = self.states[-1]
        return state, detail or ""


@dataclass(frozen=True)
class ShadowOffer:
    offer_id: str
    bundle_version: str | None
    allow_downgrade: bool
    shadow_s: float


class SlotTarget:
    """The agent side the installer drives: a real ModelSlot serving a real bundle."""

    def __init__(self, bundle: Path) -> None:
        self.configured = bundle
        self.slot = ModelSlot(load_bundle=lambda: load_bundle(bundle))
        loaded = self.slot.acquire_bundle(lambda s: True)
        assert loaded is not None
        assert self.slot.acquire_model(loaded, lambda s: True) is not None

    def current_bundle(self) -> Bundle | None:
        current = self.slot.current
        return None if current is None else current.bundle

    def swap(self, bundle: Bundle) -> None:
        self.slot.swap(bundle)

    def configured_bundle(self) -> Bundle:
        return load_bundle(self.configured)

    def answers(self) -> int:
        loaded = self.slot.checkout()
        assert loaded is not None
        try:
            bundle = loaded.bundle
            outputs = loaded.model.predict(bundle.preprocess(bundle.canary_inputs()))
            return len(bundle.interpret(outputs))
        finally:
            self.slot.checkin(loaded)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    private, public = generate_keys(root / "trusted")
    other_private, _ = generate_keys(root / "other")
    return {"private": private, "public": public, "other": other_private}


@pytest.fixture
def setup(tmp_path: Path, keys: dict[str, Path]) -> tuple[OtaInstaller, SlotTarget]:
    v1 = make_version(tmp_path / "v1", "1.0.0", keys["private"])
    target = SlotTarget(v1)
    config = OtaConfig(trusted_keys=[keys["public"]], validation_timeout_s=20.0)
    installer = OtaInstaller(
        config=config,
        state_dir=tmp_path / "state",
        store_db=tmp_path / "state" / "store.db",
        counters=PipelineCounters(),
        target=target,
    )
    return installer, target


def run(installer: OtaInstaller, bundle: Path, **offer: Any) -> tuple[str, str]:
    progress = Progress()
    installer.install(bundle, LocalOffer("t", **offer), progress).join(120)
    return progress.final


def assert_old_model_serves(installer: OtaInstaller, target: SlotTarget) -> None:
    current = target.current_bundle()
    assert current is not None
    assert current.manifest.version == "1.0.0"
    assert target.answers() == 4
    assert not installer.slots.pointer_path.exists()


def test_unsigned_bundle_is_refused(tmp_path: Path, setup: tuple[OtaInstaller, SlotTarget]) -> None:
    installer, target = setup
    state, detail = run(installer, make_version(tmp_path / "v2", "1.1.0", None))
    assert state == "refused", detail
    assert "is unsigned" in detail, detail
    assert_old_model_serves(installer, target)


def test_unknown_key_is_refused(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    state, detail = run(installer, make_version(tmp_path / "v2", "1.1.0", keys["other"]))
    assert state == "refused", detail
    assert "signed by unknown key" in detail, detail
    assert_old_model_serves(installer, target)


def test_manifest_changed_after_signing_is_refused(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    bundle = make_version(tmp_path / "v2", "1.1.0", keys["private"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["version"] = "9.0.0"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    state, detail = run(installer, bundle)
    assert state == "refused", detail
    assert "bad signature" in detail, detail
    assert_old_model_serves(installer, target)


def test_tampered_file_is_refused(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    bundle = make_version(tmp_path / "v2", "1.1.0", keys["private"])
    model = bundle / "basicmotions-int8.tflite"
    data = bytearray(model.read_bytes())
    data[-100] ^= 0xFF
    model.write_bytes(bytes(data))
    state, detail = run(installer, bundle)
    assert state == "refused", detail
    assert "sha256" in detail, detail
    assert_old_model_serves(installer, target)


def test_truncated_archive_is_refused(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    bundle = make_version(tmp_path / "v2", "1.1.0", keys["private"])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(bundle, arcname="v2")
    archive = tmp_path / "v2.tar"
    archive.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    state, detail = run(installer, archive)
    assert state == "refused", detail
    assert "truncated" in detail or "tar" in detail, detail
    assert_old_model_serves(installer, target)


def test_downgrade_and_same_version_are_refused(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    state, detail = run(installer, make_version(tmp_path / "old", "0.9.0", keys["private"]))
    assert state == "refused", detail
    assert "downgrade from 1.0.0 to 0.9.0 refused" in detail, detail
    state, detail = run(installer, make_version(tmp_path / "same", "1.0.0", keys["private"]))
    assert state == "refused", detail
    assert "version 1.0.0 is already active" in detail, detail
    state, detail = run(
        installer, make_version(tmp_path / "v2", "1.1.0", keys["private"]), bundle_version="1.2.0"
    )
    assert state == "refused", detail
    assert "the offer names version 1.2.0" in detail, detail
    assert_old_model_serves(installer, target)


def test_model_for_other_windows_fails_validation(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    state, detail = run(installer, make_version(tmp_path / "watch", "1.0.0", keys["private"], source=WATCH))
    assert state == "failed", detail
    assert (
        "takes windows of (channels, length, hop) (6, 100, 50); the running streams cut (6, 50, 10)" in detail
    )
    assert_old_model_serves(installer, target)


def test_canaries_out_of_tolerance_fail_validation(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup

    def shift(manifest: dict[str, Any]) -> None:
        case = manifest["canary"][0]
        for name, values in case["expected"].items():
            case["expected"][name] = [v + 0.5 for v in values]

    state, detail = run(installer, make_version(tmp_path / "v2", "1.1.0", keys["private"], edit=shift))
    assert state == "failed", detail
    assert "canary: canary 0: output" in detail, detail
    assert "differs by" in detail, detail
    assert_old_model_serves(installer, target)


def test_unresolved_custom_op_fails_validation(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    bundle = onnx_candidate(tmp_path / "v2", "1.1.0", keys["private"], custom_op_model())
    state, detail = run(installer, bundle)
    assert state == "failed", detail
    assert "uses op 'FancySoftmax', which onnxruntime does not provide" in detail
    assert_old_model_serves(installer, target)


def test_hanging_model_times_out(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    installer.config = installer.config.model_copy(update={"validation_timeout_s": 6.0})
    bundle = onnx_candidate(tmp_path / "v2", "1.1.0", keys["private"], hanging_model())
    state, detail = run(installer, bundle)
    assert state == "failed", detail
    assert "validation timed out" in detail, detail
    assert "within 6 s" in detail, detail
    assert_old_model_serves(installer, target)


def test_over_the_latency_budget_fails_validation(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    # A budget no model meets: the figure is measured, not assumed.
    installer.config = installer.config.model_copy(update={"max_latency_ms": 1e-6})
    state, detail = run(installer, make_version(tmp_path / "v2", "1.1.0", keys["private"]))
    assert state == "failed", detail
    assert "over the budget of 1e-06 ms ([ota] max_latency_ms)" in detail, detail
    assert_old_model_serves(installer, target)


def test_a_second_install_while_one_runs_is_refused(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, _target = setup
    assert installer._busy.acquire(blocking=False)  # an install in progress
    try:
        state, detail = run(installer, make_version(tmp_path / "v2", "1.1.0", keys["private"]))
    finally:
        installer._busy.release()
    assert state == "refused"
    assert "another install is in progress" in detail


def test_good_bundle_swaps_in_and_a_rollback_restores_the_previous(
    tmp_path: Path, keys: dict[str, Path], setup: tuple[OtaInstaller, SlotTarget]
) -> None:
    installer, target = setup
    installer.config = installer.config.model_copy(update={"probation_s": 0.0, "probation_min_windows": 8})
    done = threading.Event()

    def traffic() -> None:  # what the pipeline's counters see while the new model serves
        while not done.wait(0.02):
            installer.counters.record_batch(4, 1.0)

    feeder = threading.Thread(target=traffic)
    feeder.start()
    try:
        progress = Progress()
        # An offer asking for a shadow run, which this agent does not do yet: it says so.
        offer = ShadowOffer("t", None, False, 30.0)
        installer.install(make_version(tmp_path / "v2", "1.1.0", keys["private"]), offer, progress).join(120)
        state, detail = progress.final
    finally:
        done.set()
        feeder.join()
    assert state == "done", detail
    current = target.current_bundle()
    assert current is not None
    assert current.manifest.version == "1.1.0"
    assert current.path == installer.slots.slot_path("a")
    assert target.answers() == 4
    pointer = installer.slots.read()
    assert (pointer.active, pointer.previous, pointer.committed) == ("a", None, True)

    assert installer.request_rollback("rollback_model command") is None
    current = target.current_bundle()
    assert current is not None
    assert current.manifest.version == "1.0.0"
    assert target.answers() == 4
    pointer = installer.slots.read()
    assert (pointer.active, pointer.previous, pointer.committed) == (None, "a", True)
    assert installer.request_rollback("again") == "no previous model: the configured bundle is active"
