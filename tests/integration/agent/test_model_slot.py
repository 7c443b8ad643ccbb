"""The model slot with the real demo bundles and models: acquire, check out, swap, close."""

from __future__ import annotations

import json
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.model_slot import ModelSlot
from edgefleet.agent.pipeline import Pipeline, PipelineSettings, StreamSpec
from edgefleet.agent.sources import SyntheticSourceConfig, create_source
from edgefleet.agent.store import Store, StoreConfig
from edgefleet.errors import EdgefleetError, ModelError
from edgefleet.runtime import Model
from edgefleet.runtime.bundle import Bundle, load_bundle

pytestmark = pytest.mark.integration

BUNDLES = Path(__file__).resolve().parents[3] / "models" / "bundles"
WINDOWS = np.zeros((4, 50, 6), np.float32)


def _answers(model: Model) -> int:
    """How many windows ``model`` answered for WINDOWS (its one output, whatever its name)."""
    [output] = model.predict(WINDOWS).values()
    return len(output)


@pytest.fixture
def tflite() -> Bundle:
    return load_bundle(BUNDLES / "basicmotions-edge-tflite")


@pytest.fixture
def onnx() -> Bundle:
    return load_bundle(BUNDLES / "basicmotions-edge-onnx")


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def __call__(self, kind: str, message: str, **_: Any) -> None:
        self.kinds.append(kind)


def _never_stop(seconds: float) -> bool:
    return False


def test_acquire_retries_until_the_model_opens_and_reports_each_error_once(tflite: Bundle) -> None:
    attempts: list[int] = []

    def flaky(bundle: Bundle) -> Model:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("model file unreadable")
        return bundle.open_model()

    events = Events()
    slot = ModelSlot(load_bundle=lambda: tflite, open_model=flaky, retry_s=0.01, add_event=events)
    assert slot.info()["state"] == "loading"
    assert slot.acquire_bundle(_never_stop) is tflite
    states: list[str] = []

    def wait(seconds: float) -> bool:
        states.append(slot.info()["state"])
        return False

    loaded = slot.acquire_model(tflite, wait)
    assert loaded is not None
    assert states == ["failed", "failed"]
    info = slot.info()
    assert (info["state"], info["name"], info["error"], info["attempts"]) == (
        "loaded",
        "basicmotions-edge-tflite",
        None,
        2,
    )
    assert events.kinds == ["model_load_failed", "model_loaded"]  # one event for the repeated error
    slot.close()
    assert slot.info()["state"] == "closed"


def test_acquire_gives_up_when_the_caller_stops() -> None:
    def broken() -> Bundle:
        raise OSError("no such bundle")

    slot = ModelSlot(load_bundle=broken, retry_s=0.01)
    assert slot.acquire_bundle(lambda seconds: True) is None
    assert slot.info()["error"] == "model bundle failed to load: no such bundle"


def test_swap_lets_the_batch_in_flight_finish_on_the_old_model(tflite: Bundle, onnx: Bundle) -> None:
    events = Events()
    slot = ModelSlot(load_bundle=lambda: tflite, add_event=events)
    slot.acquire_bundle(_never_stop)
    first = slot.acquire_model(tflite, _never_stop)
    assert first is not None
    in_flight = slot.checkout()
    assert in_flight is first
    second = slot.swap(onnx)
    assert slot.current is second
    assert slot.info()["name"] == "basicmotions-edge-onnx"
    # The old model still answers the batch it was running ...
    assert _answers(first.model) == 4
    slot.checkin(in_flight)
    # ... and is closed once that batch is handed back.
    with pytest.raises(ModelError, match="closed"):
        first.model.predict(WINDOWS)
    again = slot.checkout()
    assert again is second
    assert _answers(again.model) == 4
    slot.checkin(again)
    assert events.kinds == ["model_loaded", "model_swapped"]
    slot.close()
    with pytest.raises(ModelError, match="closed"):
        second.model.predict(WINDOWS)


def test_swap_closes_an_idle_old_model_at_once(tflite: Bundle, onnx: Bundle) -> None:
    slot = ModelSlot(load_bundle=lambda: tflite)
    slot.acquire_bundle(_never_stop)
    first = slot.acquire_model(tflite, _never_stop)
    assert first is not None
    slot.swap(onnx)
    with pytest.raises(ModelError, match="closed"):
        first.model.predict(WINDOWS)
    slot.close()


def test_swap_refuses_a_bundle_that_cuts_other_windows(tflite: Bundle, tmp_path: Path) -> None:
    other = tmp_path / "other-hop"
    shutil.copytree(BUNDLES / "basicmotions-edge-onnx", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["preprocessing"]["hop"] = 25
    (other / "manifest.json").write_text(json.dumps(manifest))
    slot = ModelSlot(load_bundle=lambda: tflite)
    slot.acquire_bundle(_never_stop)
    first = slot.acquire_model(tflite, _never_stop)
    assert first is not None
    with pytest.raises(ModelError, match=r"\(6, 50, 25\).*\(6, 50, 10\)") as caught:
        slot.swap(load_bundle(other))
    assert caught.value.hint is not None
    assert slot.current is first  # the running model stays
    slot.close()


def test_close_waits_for_the_batch_in_flight_and_refuses_later_swaps(tflite: Bundle, onnx: Bundle) -> None:
    slot = ModelSlot(load_bundle=lambda: tflite)
    slot.acquire_bundle(_never_stop)
    first = slot.acquire_model(tflite, _never_stop)
    assert first is not None
    in_flight = slot.checkout()
    assert in_flight is not None
    slot.close()
    assert slot.checkout() is None
    assert _answers(in_flight.model) == 4
    slot.checkin(in_flight)
    with pytest.raises(ModelError, match="closed"):
        first.model.predict(WINDOWS)
    with pytest.raises(ModelError, match="slot is closed"):
        slot.swap(onnx)


def test_a_running_pipeline_swaps_models_without_losing_a_window(
    tflite: Bundle, onnx: Bundle, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "store.db", StoreConfig(path=tmp_path / "store.db"))
    # Paced, so that the stream is still running when the swap lands.
    config = SyntheticSourceConfig(name="imu", channels=6, rate_hz=2000.0, duration_s=8.0, seed=1)
    pipeline = Pipeline(
        store=store,
        streams=[StreamSpec("imu", partial(create_source, config))],
        load_bundle=lambda: tflite,
        settings=PipelineSettings(backpressure="block", max_batch_size=16),
    )
    pipeline.start()
    try:
        assert pipeline.first_result.wait(60), "no result from the first model"
        pipeline.model_slot.swap(onnx)
        deadline = time.monotonic() + 60
        while store.query_results(limit=1)[0]["model_name"] != "basicmotions-edge-onnx":
            assert time.monotonic() < deadline, "no result from the swapped-in model"
            time.sleep(0.05)
    finally:
        report = pipeline.stop(timeout=30)
    assert report.completed
    assert pipeline.model_info()["name"] == "basicmotions-edge-onnx"
    rows = store.query_results(limit=100_000)
    assert {r["model_name"] for r in rows} == {"basicmotions-edge-tflite", "basicmotions-edge-onnx"}
    seqs = sorted(r["window_seq"] for r in rows)
    assert seqs == list(range(len(seqs)))  # every window answered once, by one model or the other
    store.close()


def test_a_model_opened_after_close_is_closed_not_installed(tflite: Bundle) -> None:
    opened: list[Model] = []

    def open_while_stopping(bundle: Bundle) -> Model:
        slot.close()  # the pipeline stops while the model is being opened
        opened.append(bundle.open_model())
        return opened[0]

    slot = ModelSlot(load_bundle=lambda: tflite, open_model=open_while_stopping)
    assert slot.acquire_model(tflite, _never_stop) is None
    assert slot.current is None
    assert slot.info()["state"] == "closed"
    with pytest.raises(ModelError, match="closed"):
        opened[0].predict(WINDOWS)


def test_a_swap_whose_model_cannot_open_keeps_the_running_model(tflite: Bundle, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(BUNDLES / "basicmotions-edge-onnx", broken)
    bundle = load_bundle(broken)
    (broken / "basicmotions-int8.onnx").write_bytes(b"not an onnx model")
    slot = ModelSlot(load_bundle=lambda: tflite)
    slot.acquire_bundle(_never_stop)
    first = slot.acquire_model(tflite, _never_stop)
    assert first is not None
    with pytest.raises(EdgefleetError):
        slot.swap(bundle)
    assert slot.current is first
    assert _answers(first.model) == 4
    slot.close()
