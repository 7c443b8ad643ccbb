"""Shadow mode in the installer, with real models: a real ModelSlot serves the signed demo bundle
1.0.0 and a traffic thread infers real windows on it, handing each batch to the shadow tap as the
inference worker does. A candidate that answers like it is activated after its shadow run; one that
answers with low confidence is refused before anything is swapped, and 1.0.0 keeps answering."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.config import OtaConfig
from edgefleet.agent.inference import ShadowTap
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.model_slot import ModelSlot
from edgefleet.agent.ota_install import LocalOffer, OtaInstaller
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_signing import generate_keys
from tests.support.ota_bundles import make_version


class Progress:
    def __init__(self) -> None:
        self.states: list[tuple[str, str | None, dict[str, Any] | None]] = []

    def __call__(
        self,
        state: str,
        progress: float = 0.0,
        detail: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.states.append((state, detail, metrics))


class ServingTarget:
    """A real model slot answering real windows in its own thread, like the inference worker."""

    def __init__(self, bundle: Path) -> None:
        self.configured = bundle
        self.slot = ModelSlot(load_bundle=lambda: load_bundle(bundle))
        loaded = self.slot.acquire_bundle(lambda s: True)
        assert loaded is not None
        assert self.slot.acquire_model(loaded, lambda s: True) is not None
        self.shadow: ShadowTap | None = None
        self.answered: Counter[str] = Counter()  # windows answered, by the version that answered
        self.counters = PipelineCounters()
        self._stop = threading.Event()
        raw = loaded.canary_inputs()
        self._windows = np.concatenate([raw] * 4)  # 16 windows per batch
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.wait(0.01):
            loaded = self.slot.checkout()
            assert loaded is not None
            try:
                bundle = loaded.bundle
                outputs = loaded.model.predict(bundle.preprocess(self._windows))
                batch = Batch([], self._windows)  # the tap reads only the data
                answers = bundle.interpret_batch(outputs)
                self.answered[loaded.version] += len(answers)
                self.counters.record_batch(len(answers), 1.0)
                tap = self.shadow
                if tap is not None:
                    tap(bundle, batch, outputs, 1.0)
            finally:
                self.slot.checkin(loaded)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.slot.close()

    def current_bundle(self) -> Bundle | None:
        current = self.slot.current
        return None if current is None else current.bundle

    def swap(self, bundle: Bundle) -> None:
        self.slot.swap(bundle)

    def configured_bundle(self) -> Bundle:
        return load_bundle(self.configured)

    def set_shadow(self, tap: ShadowTap | None) -> None:
        self.shadow = tap


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keys(tmp_path / "keys")


@pytest.fixture
def setup(tmp_path: Path, keys: tuple[Path, Path]) -> Iterator[tuple[OtaInstaller, ServingTarget]]:
    target = ServingTarget(make_version(tmp_path / "v1", "1.0.0", keys[0]))
    config = OtaConfig(
        trusted_keys=[keys[1]], validation_timeout_s=20.0, probation_s=0.0, probation_min_windows=8
    )
    installer = OtaInstaller(
        config=config,
        state_dir=tmp_path / "state",
        store_db=tmp_path / "state" / "store.db",
        counters=target.counters,
        target=target,
    )
    yield installer, target
    target.close()


def install(installer: OtaInstaller, bundle: Path, shadow_s: float) -> Progress:
    progress = Progress()
    installer.install(bundle, LocalOffer("t", shadow_s=shadow_s), progress).join(120)
    return progress


def test_a_good_candidate_is_activated_after_its_shadow_run(
    tmp_path: Path, keys: tuple[Path, Path], setup: tuple[OtaInstaller, ServingTarget]
) -> None:
    installer, target = setup
    progress = install(installer, make_version(tmp_path / "v2", "1.1.0", keys[0]), 1.5)
    states = [state for state, _, _ in progress.states]
    assert states[-1] == "done", progress.states
    assert states.index("shadow") < states.index("activating")
    passed = [(d, m) for s, d, m in progress.states if s == "shadow" and d == "passed"]
    assert len(passed) == 1, progress.states
    shadow = passed[0][1]["shadow"]  # type: ignore[index]
    assert shadow["windows"] >= 20
    assert shadow["agreement"] == 1.0  # the same network: same top label on every window
    assert shadow["confidence_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert shadow["candidate_p95_ms"] > 0
    current = target.current_bundle()
    assert current is not None
    assert current.manifest.version == "1.1.0"
    assert target.shadow is None  # the tap is detached after the run


def test_a_low_confidence_candidate_is_refused_by_its_shadow_run(
    tmp_path: Path, keys: tuple[Path, Path], setup: tuple[OtaInstaller, ServingTarget]
) -> None:
    installer, target = setup
    bad = make_version(tmp_path / "bad", "1.2.0", keys[0], std_scale=20.0)  # passes validation
    progress = install(installer, bad, 1.5)
    state, detail, metrics = progress.states[-1]
    assert state == "failed", progress.states
    assert detail is not None
    assert detail.startswith("shadow: "), detail
    assert "mean confidence" in detail, detail
    assert metrics is not None
    assert metrics["shadow"]["confidence_ratio"] < 0.8
    assert "activating" not in [s for s, _, _ in progress.states]
    # Nothing was swapped: 1.0.0 answered every window, before, during and after.
    before = target.answered["1.0.0"]
    current = target.current_bundle()
    assert current is not None
    assert current.manifest.version == "1.0.0"
    assert set(target.answered) == {"1.0.0"}
    assert not installer.slots.pointer_path.exists()
    assert target.shadow is None
    threading.Event().wait(0.2)
    assert target.answered["1.0.0"] > before  # still serving


def test_a_shadow_run_without_enough_windows_is_refused(
    tmp_path: Path, keys: tuple[Path, Path], setup: tuple[OtaInstaller, ServingTarget]
) -> None:
    installer, target = setup
    installer.config = installer.config.model_copy(update={"shadow_min_windows": 10**9})
    progress = install(installer, make_version(tmp_path / "v2", "1.1.0", keys[0]), 0.5)
    state, detail, _ = progress.states[-1]
    assert state == "failed"
    assert detail is not None
    assert "windows compared in 0.5 s (at least 1000000000 needed" in detail, detail
    current = target.current_bundle()
    assert current is not None
    assert current.manifest.version == "1.0.0"
