"""What `edgefleet demo` writes and says before starting anything: controller config, port notice."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.config import AgentConfig, parse_config
from edgefleet.agent.sources.replay import ReplaySourceConfig
from edgefleet.controller.config import load_controller_config
from edgefleet.demo import DemoFleet, DemoSettings, _port_or_free, find_models_dir

pytestmark = pytest.mark.unit


def test_the_demo_controller_keeps_one_second_result_buckets(tmp_path: Path) -> None:
    fleet = DemoFleet(DemoSettings())
    fleet.broker_port, fleet.http_port = 1883, 8080
    path = tmp_path / "controller.toml"
    path.write_text(fleet.controller_config())
    config = load_controller_config(path)
    assert config.ingest.result_bucket_s == 1
    assert config.http.port == 8080


def test_a_taken_port_is_replaced_and_said() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fleet = DemoFleet(DemoSettings(http_port=port))
        fleet.http_port = _port_or_free(port)
    assert fleet.http_port != port
    assert fleet.port_notice() == (
        f"edgefleet demo: port {port} is in use, so the dashboard is on port {fleet.http_port} "
        "(choose one with --http-port)"
    )


def test_no_notice_when_the_port_was_free_or_any_port_was_asked() -> None:
    fleet = DemoFleet(DemoSettings(http_port=8080))
    fleet.http_port = 8080
    assert fleet.port_notice() is None
    fleet = DemoFleet(DemoSettings(http_port=0))
    fleet.http_port = 41234
    assert fleet.port_notice() is None


def test_three_devices_replay_held_out_watch_recordings_with_fallback_and_the_fourth_stays_faulty(
    tmp_path: Path,
) -> None:
    models = find_models_dir()
    fleet = DemoFleet(DemoSettings(workdir=tmp_path))
    fleet.workdir, fleet.broker_port, fleet.http_port = tmp_path, 1883, 8080
    configs = [parse_config(fleet.agent_config(i, models), base_dir=tmp_path) for i in range(4)]
    chosen = json.loads((models / "demo" / "watch_share_validation.json").read_text())["chosen"]
    for config in configs[:3]:
        assert config.model.bundle.name.startswith("watch-edge-")
        assert config.fallback.enabled
        assert config.sync.enabled
        assert (config.fallback.target_share, config.fallback.score) == (
            chosen["target_share"],
            chosen["score"],
        )
        with np.load(replay_file(config)) as replay:
            assert replay["samples"].shape == (held_out_samples(models), 6)
    # Each device starts at a different held-out recording.
    firsts = {np.load(replay_file(c))["samples"][0].tobytes() for c in configs[:3]}
    assert len(firsts) == 3
    assert configs[3].model.bundle.name == "basicmotions-edge-tflite"
    assert not configs[3].fallback.enabled

    path = tmp_path / "controller.toml"
    path.write_text(fleet.controller_config())
    controller = load_controller_config(path)
    assert controller.inference.enabled
    assert controller.inference.bundle == models / "bundles" / "watch-cloud"


def replay_file(config: AgentConfig) -> Path:
    source = config.sources[0]
    assert isinstance(source, ReplaySourceConfig)
    return source.file


def held_out_samples(models: Path) -> int:
    with np.load(models / "data" / "watch.npz") as data:
        lengths = np.diff(data["offsets"])[data["test"]]
    return int(lengths.sum())
