"""Inference requests as pure functions (decode, check, refuse, respond) and ``[inference]`` config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import InferRequestBody, InferResponseBody, make_envelope
from edgefleet.controller.config import load_controller_config
from edgefleet.controller.inference.requests import (
    Job,
    RequestRefusedError,
    parse_request,
    response_payload,
    response_topic,
)
from edgefleet.controller.inference.worker import worker_mqtt
from edgefleet.errors import ConfigError

pytestmark = pytest.mark.unit

PREFIX = "edgefleet/v1"
TOPIC = f"{PREFIX}/dev-1/infer/request"


def request(window: np.ndarray[Any, Any], *, shape: list[int] | None = None, device: str = "dev-1") -> bytes:
    body = InferRequestBody(
        request_id="r-1",
        stream="imu",
        window_start=1.0,
        window_end=3.0,
        shape=shape if shape is not None else list(window.shape),
        data=np.ascontiguousarray(window, dtype="<f4").tobytes(),
        fallback_reason="low_confidence",
    )
    return encode_message(make_envelope(device, "infer/request", body))


def parse(payload: bytes, topic: str = TOPIC) -> Job:
    return parse_request(
        topic,
        payload,
        window_shape=(100, 6),
        received_at=5.0,
        prefix=PREFIX,
        max_bytes=4096,
        correlation_data=b"c",
    )


def test_a_good_request_becomes_a_job_with_its_window() -> None:
    window = np.arange(600, dtype=np.float32).reshape(100, 6)
    job = parse(request(window))
    assert (job.device_id, job.request_id, job.correlation_data, job.received_at) == (
        "dev-1",
        "r-1",
        b"c",
        5.0,
    )
    assert np.array_equal(job.window, window)
    assert parse(request(window[None], shape=[1, 100, 6])).window.shape == (100, 6)


@pytest.mark.parametrize(
    ("payload", "reason", "needle", "knows_request"),
    [
        (b"\x00garbage", "malformed", "", False),
        (request(np.zeros((50, 6), np.float32)), "bad_shape", "expected [100, 6]", True),
        (request(np.zeros((100, 6), np.float32))[:-3], "malformed", "", False),
        (request(np.full((100, 6), np.inf, np.float32)), "bad_data", "NaN or infinite", True),
        (request(np.zeros((40, 6), np.float32), shape=[100, 6]), "bad_data", "expected 2400 (float32)", True),
        (request(np.random.default_rng(0).standard_normal((200, 6)), shape=[100, 6]), "oversize", "", False),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    payload: bytes, reason: str, needle: str, knows_request: bool
) -> None:
    with pytest.raises(RequestRefusedError) as info:
        parse(payload)
    assert info.value.reason == reason
    assert needle in str(info.value)
    assert (info.value.request_id == "r-1") is knows_request


def test_a_request_published_on_another_devices_topic_is_refused() -> None:
    with pytest.raises(RequestRefusedError) as info:
        parse(request(np.zeros((100, 6), np.float32), device="dev-2"))
    assert info.value.reason == "wrong_topic"


def test_responses_go_to_the_devices_own_topic_and_decode() -> None:
    topic = response_topic("dev-1", PREFIX)
    assert topic == "edgefleet/v1/dev-1/infer/response"
    envelope = decode_message(
        topic, response_payload("dev-1", "r-1", label="ABD", score=0.9, outputs=[0.1, 0.9])
    )
    assert envelope.body == InferResponseBody(request_id="r-1", label="ABD", score=0.9, outputs=[0.1, 0.9])


def test_inference_enabled_without_a_bundle_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text("[inference]\nenabled = true\n")
    with pytest.raises(ConfigError) as info:
        load_controller_config(path)
    assert "inference.bundle" in str(info.value) + "".join(str(i) for i in info.value.issues)


def test_a_relative_bundle_resolves_against_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('[inference]\nbundle = "bundles/watch-cloud"\nworkers = 3\n')
    config = load_controller_config(path)
    assert config.inference.bundle == tmp_path / "bundles" / "watch-cloud"
    assert (config.inference.workers, config.inference.enabled) == (3, False)


@pytest.mark.parametrize(
    ("usernames", "expected"),
    [('["infer-1"]', "names 1 users for 2 workers"), ('["infer-1", "infer-1"]', "repeats a name")],
)
def test_worker_user_names_must_be_one_per_worker(tmp_path: Path, usernames: str, expected: str) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(f"[inference]\nworkers = 2\nusernames = {usernames}\n")
    with pytest.raises(ConfigError) as info:
        load_controller_config(path)
    assert expected in str(info.value) + "".join(str(i) for i in info.value.issues)


def test_each_worker_logs_in_as_its_own_user(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(
        '[mqtt]\nusername = "controller-1"\npassword_env = "CTL_PW"\n'
        '[inference]\nworkers = 2\nusernames = ["infer-1", "infer-2"]\npassword_env = "INFER_PW"\n'
    )
    config = load_controller_config(path)
    users = [worker_mqtt(config.mqtt, config.inference, i) for i in range(2)]
    assert [(u.username, u.password_env) for u in users] == [("infer-1", "INFER_PW"), ("infer-2", "INFER_PW")]
    assert config.mqtt.username == "controller-1"  # the controller's own identity is untouched
    shared = load_controller_config(None)
    assert worker_mqtt(shared.mqtt, shared.inference, 0) is shared.mqtt
