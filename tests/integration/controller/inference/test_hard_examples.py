"""Hard examples end to end on a real controller (inference enabled, real watch-cloud bundle, real
Mosquitto, real SQLite): kept with both answers, listed by the API with paging and filters,
exported by the CLI to .npz, and deleted by retention."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import InferRequestBody, make_envelope
from edgefleet.controller.config import RetentionConfig
from edgefleet.controller.inference import InferenceConfig
from edgefleet.controller.retention import RetentionWorker
from tests.integration.controller.conftest import (
    RunningController,
    controller_config,
    start_controller,
    wait_for,
)
from tests.integration.controller.inference.test_inference_worker import (
    CLOUD_BUNDLE,
    Device,
    cloud_answers,
    held_out_windows,
)
from tests.support.broker import MosquittoBroker
from tests.unit.controller.db_fixtures import DB_KINDS, throwaway_database

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[4]


@pytest.fixture(params=DB_KINDS)
def controller(
    request: pytest.FixtureRequest, mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[RunningController]:
    with throwaway_database(request.param, tmp_path) as (database, db_config):
        database.close()
        config = controller_config(mosquitto, db_config)
        config.inference = InferenceConfig(enabled=True, bundle=CLOUD_BUNDLE, max_wait_ms=10.0)
        running = start_controller(config)
        try:
            assert running.service.inference is not None
            assert running.service.inference.wait_ready(15)
            yield running
        finally:
            running.service.stop()


def ask(
    device: Device, request_id: str, window: np.ndarray[Any, Any], edge: tuple[str, float] | None
) -> None:
    body = InferRequestBody(
        request_id=request_id,
        stream="imu",
        window_seq=7,
        window_start=100.0,
        window_end=102.0,
        shape=list(window.shape),
        data=np.ascontiguousarray(window, dtype="<f4").tobytes(),
        fallback_reason="low_confidence" if edge else "no_model",
        edge_label=edge[0] if edge else None,
        edge_score=edge[1] if edge else None,
    )
    device.publish_raw(encode_message(make_envelope(device.device_id, "infer/request", body)), request_id)


def test_hard_examples_are_kept_listed_exported_and_expire(
    controller: RunningController, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    windows = held_out_windows(6)
    cloud_labels, _ = cloud_answers(windows)
    first, second = Device(mosquitto, "watch-a"), Device(mosquitto, "watch-b")
    started = time.time()
    try:
        for i in range(4):
            ask(first, f"a-{i}", windows[i], ("curl", 0.4 + i / 100) if i % 2 == 0 else None)
        for i in range(4, 6):
            ask(second, f"b-{i}", windows[i], ("raise", 0.3))
        wait_for(lambda: len(first.answers()) == 4 and len(second.answers()) == 2, what="6 answers")
        wait_for(lambda: controller.get("/api/hard-examples")["total"] == 6, what="6 hard examples stored")
    finally:
        first.close()
        second.close()

    page = controller.get("/api/hard-examples", device_id="watch-a")
    assert page["total"] == 4
    by_id = {item["request_id"]: item for item in page["items"]}
    assert set(by_id) == {"a-0", "a-1", "a-2", "a-3"}
    for i in range(4):
        item = by_id[f"a-{i}"]
        assert item["cloud_label"] == cloud_labels[i]
        assert item["model_name"] == "watch-cloud"
        assert item["shape"] == [100, 6]
        assert (item["stream"], item["window_start"], item["window_end"]) == ("imu", 100.0, 102.0)
        assert item["window_f32_base64"] is None  # metadata only unless asked
        if i % 2 == 0:
            assert (item["edge_label"], item["fallback_reason"]) == ("curl", "low_confidence")
            assert item["edge_score"] == pytest.approx(0.4 + i / 100)
        else:
            assert (item["edge_label"], item["edge_score"]) == (None, None)
            assert item["fallback_reason"] == "no_model"

    # Paging walks the whole set once; since filters by answer time; windows come back byte-exact.
    seen = []
    for offset in (0, 2, 4):
        part = controller.get("/api/hard-examples", limit=2, offset=offset, windows="true")
        assert (part["total"], len(part["items"])) == (6, 2)
        seen += part["items"]
    assert sorted(i["request_id"] for i in seen) == ["a-0", "a-1", "a-2", "a-3", "b-4", "b-5"]
    for item in seen:
        index = int(item["request_id"].split("-")[1])
        sent = np.frombuffer(base64.b64decode(item["window_f32_base64"]), dtype="<f4").reshape(100, 6)
        assert np.array_equal(sent, windows[index])
    assert controller.get("/api/hard-examples", since=started - 60)["total"] == 6
    assert controller.get("/api/hard-examples", since=time.time() + 60)["total"] == 0
    anonymous = httpx.get(controller.base_url + "/api/hard-examples", timeout=10)
    assert anonymous.status_code == 401

    # The CLI export: the same windows and answers, oldest first.
    out = tmp_path / "hard.npz"
    db = controller.service.config.database
    config = tmp_path / "controller.toml"
    url = db.url or f"sqlite:///{db.resolved_sqlite_path()}"
    config.write_text(f'[database]\nurl = "{url}"\nschema_name = "{db.schema_name}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet", "controller", "export-hard-examples", "--config", str(config),
         "--out", str(out), "--device-id", "watch-b"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote 2 hard examples" in done.stdout
    with np.load(out) as data:  # no allow_pickle: plain arrays only
        assert data["windows"].shape == (2, 100, 6)
        assert data["windows"].dtype == np.float32
        assert list(data["request_ids"]) == ["b-4", "b-5"]
        assert np.array_equal(data["windows"], windows[4:6])
        assert list(data["cloud_labels"]) == cloud_labels[4:6]
        assert list(data["edge_labels"]) == ["raise", "raise"]
        assert np.allclose(data["edge_scores"], [0.3, 0.3])
        assert list(data["device_ids"]) == ["watch-b", "watch-b"]
        assert list(data["reasons"]) == ["low_confidence"] * 2
    refused = subprocess.run(
        [sys.executable, "-m", "edgefleet", "controller", "export-hard-examples", "--config", str(config),
         "--out", str(tmp_path / "hard.csv")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert refused.returncode != 0
    assert ".npz" in refused.stderr

    # Retention: nothing goes before retention.hard_examples_s, everything after.
    database = controller.service.database
    retention = RetentionConfig(hard_examples_s=86_400)
    RetentionWorker(database, retention, clock=lambda: time.time() + 3600).run_once()
    assert database.hard_examples()[1] == 6
    report = RetentionWorker(database, retention, clock=lambda: time.time() + 86_400 + 60).run_once()
    assert report.deleted["hard_examples"] == 6
    assert database.hard_examples()[1] == 0
