"""The balena release is secure by default: static checks of compose, images and baked configs
(no Docker engine runs here; tests/integration/deploy runs the broker image's config for real)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from edgefleet.agent.config import load_config
from edgefleet.controller.config import load_controller_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def compose() -> dict[str, dict[str, dict[str, object]]]:
    loaded = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_no_open_broker_in_the_compose_file() -> None:
    for name, service in compose()["services"].items():
        if "mosquitto-no-auth.conf" in str(service.get("command", "")):
            # Only the on-device sensor broker may be open, and only inside the device's network.
            assert name == "sensor-broker"
            assert "ports" not in service
    broker = compose()["services"]["controller-broker"]
    assert broker["build"] == {"context": ".", "dockerfile": "images/broker/Dockerfile"}
    assert broker["ports"] == ["8883:8883"]  # devices only; never 1883, never the controller listener
    assert "broker-certs:/etc/mosquitto/certs" in broker["volumes"]  # type: ignore[operator]
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):  # type: ignore[attr-defined]
            assert not str(port).startswith("1883"), f"{name} publishes plain MQTT"


def test_the_ca_key_volume_is_the_controllers_alone() -> None:
    services = compose()["services"]
    agent_volumes = " ".join(services["agent"]["volumes"])  # type: ignore[arg-type]
    assert "controller-data" not in agent_volumes
    assert "broker-certs" not in agent_volumes
    assert "agent-certs:/etc/edgefleet/tls" in agent_volumes


def test_the_agent_image_config_uses_mutual_tls_on_the_device_listener() -> None:
    config = load_config(REPO / "images/agent/agent.toml")
    assert config.sync.port == 8883
    assert config.sync.tls is not None
    assert config.sync.tls.cert_file is not None
    assert config.sync.tls.key_file is not None
    assert config.sync.client_id is None  # = device id = certificate CN, what the broker enforces


def test_the_controller_image_config_uses_the_controller_listener() -> None:
    config = load_controller_config(REPO / "images/controller/controller.toml")
    mqtt = config.mqtt
    assert (mqtt.port, mqtt.tls.enabled, mqtt.topic_prefix) == (8884, True, "devices/edgefleet/v1")
    assert mqtt.username.startswith("controller-")
    assert mqtt.password_env
    assert mqtt.password_env in (REPO / "docker-compose.yml").read_text()


def test_broker_image_copies_real_files_and_starts_through_the_guard() -> None:
    lines = (REPO / "images/broker/Dockerfile").read_text().splitlines()
    copies = [shlex.split(line)[1:] for line in lines if line.startswith("COPY ")]
    assert copies
    for *sources, _dest in copies:
        for source in sources:
            assert (REPO / source).exists(), source
    assert any("deploy/mosquitto/edgefleet.conf" in c[0] and "conf.d" in c[1] for c in copies)
    assert 'CMD ["/usr/local/bin/edgefleet-broker-start"]' in lines
    main = (REPO / "images/broker/mosquitto.conf").read_text()
    assert "include_dir /mosquitto/config/conf.d" in main
