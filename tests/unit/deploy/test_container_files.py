"""Static checks of the container and balena files: no Docker engine runs here, so we check
that they parse, that every COPY source exists and every command names something real."""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import tomllib
import yaml
from dockerfile_parse import DockerfileParser

from edgefleet.cli.main import build_parser

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
DOCKERFILES = [REPO / "images/agent/Dockerfile.template", REPO / "images/controller/Dockerfile"]
BALENA_MACHINE = "raspberrypi4-64"


def parsed(path: Path) -> list[dict[str, str]]:
    text = path.read_text().replace("%%BALENA_MACHINE_NAME%%", BALENA_MACHINE)
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    return list(parser.structure)


def console_scripts() -> set[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(pyproject["project"]["scripts"])


def exec_form(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        return list(json.loads(value))
    return shlex.split(value)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_parses_and_is_multistage(dockerfile: Path) -> None:
    instructions = parsed(dockerfile)
    froms = [i for i in instructions if i["instruction"] == "FROM"]
    assert len(froms) >= 2, "the final image must not carry the build stage's compilers"
    assert "AS build" in froms[0]["value"]
    users = [i["value"] for i in instructions if i["instruction"] == "USER"]
    assert users, "the image must not run as root"
    assert users[-1] not in {"root", "0"}
    assert any(i["instruction"] == "HEALTHCHECK" for i in instructions)
    assert any(i["instruction"] == "VOLUME" for i in instructions), "state belongs on a volume"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_exists(dockerfile: Path) -> None:
    for instruction in parsed(dockerfile):
        if instruction["instruction"] != "COPY" or "--from=" in instruction["value"]:
            continue
        *sources, _dest = shlex.split(instruction["value"])
        for source in sources:
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY source {source} is missing"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_commands_name_real_console_scripts_and_cli_commands(dockerfile: Path) -> None:
    parser = build_parser()
    scripts = console_scripts()
    checked = 0
    for instruction in parsed(dockerfile):
        kind = instruction["instruction"]
        value = instruction["value"]
        if kind == "HEALTHCHECK":
            value = value.split("CMD", 1)[1]
        elif kind not in {"CMD", "ENTRYPOINT"}:
            continue
        argv = exec_form(value)
        if argv[0] in scripts:
            # parse_args exits on an unknown command or flag, which fails the test.
            parser.parse_args(argv[1:])
        else:
            assert argv[0] in {"python3", "mosquitto"}, f"{dockerfile.name}: unknown program {argv[0]}"
        checked += 1
    assert checked >= 2


def test_config_files_baked_into_images_are_valid() -> None:
    from edgefleet.agent.config import load_config

    load_config(REPO / "images/agent/agent.toml")


def compose_validator() -> jsonschema.Draft201909Validator:
    # The vendored schema (from docker-compose 1.29.2, Apache-2.0) declares draft 2019-09.
    schema = json.loads((REPO / "tests/fixtures/deploy/compose_spec.json").read_text())
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_validates_against_the_compose_schema() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    compose_validator().validate(compose)
    assert {"agent", "sensor-broker", "controller"} <= set(compose["services"])
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file(), name
    assert "edgefleet-data:/var/lib/edgefleet" in compose["services"]["agent"]["volumes"]


def test_compose_schema_rejects_a_broken_file() -> None:
    with pytest.raises(jsonschema.ValidationError):
        compose_validator().validate({"services": {"agent": {"restart": ["always"]}}})


def test_balena_yml_has_the_keys_balena_requires() -> None:
    balena = yaml.safe_load((REPO / "balena.yml").read_text())
    for key in ("name", "type", "version", "description", "data"):
        assert balena.get(key), f"balena.yml lacks {key}"
    data = balena["data"]
    supported = data["supportedDeviceTypes"]
    assert data["defaultDeviceType"] in supported
    assert {"raspberrypi4-64", "raspberrypi5"} <= set(supported)
    assert any(device.startswith("jetson-") and "orin" in device for device in supported)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert balena["version"] == pyproject["project"]["version"]
