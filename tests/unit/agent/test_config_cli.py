"""`edgefleet config check|show|example`, run through the real CLI entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tomllib

from edgefleet.agent.config import parse_config
from edgefleet.agent.sources import SyntheticSourceConfig
from edgefleet.cli.config import dump_toml, example_text
from edgefleet.cli.main import main

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_edgefleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("EDGEFLEET_"):
            monkeypatch.delenv(name)


def uncomment_source_blocks(text: str) -> str:
    """The example with each commented-out ``# [[sources...]]`` block switched on."""
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        if line.startswith("# [[sources"):
            in_block = True
        if in_block and line.startswith("# "):
            out.append(line[2:])
            continue
        in_block = False
        out.append(line)
    return "\n".join(out) + "\n"


def test_example_passes_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "example"]) == 0
    example = capsys.readouterr().out
    assert example == example_text()
    path = tmp_path / "agent.toml"
    path.write_text(example)
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {path} is a valid agent config")
    assert "device: edge-001" in out


def test_check_says_the_example_s_drift_and_fallback_are_not_active(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(example_text())
    assert main(["config", "check", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    inactive = [line.strip() for line in lines if "NOT ACTIVE" in line]
    assert [line.split(" ")[2] for line in inactive] == ["[drift]", "[fallback]"]


def test_example_documents_every_section() -> None:
    data = tomllib.loads(example_text())
    assert set(data) == {
        "device", "sources", "model", "batching", "store", "sync", "fallback", "drift", "health", "logging",
    }  # fmt: skip


def test_example_commented_source_blocks_are_valid_too(tmp_path: Path) -> None:
    text = uncomment_source_blocks(example_text())
    config = parse_config(text, base_dir=tmp_path)
    assert [s.type for s in config.sources] == ["synthetic", "replay", "udp", "unix", "mqtt"]
    synthetic = config.sources[0]
    assert isinstance(synthetic, SyntheticSourceConfig)
    assert synthetic.drift[0].kind == "gain"


def test_check_lists_every_error_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[device]\nid = "x"\n[[sources]]\ntype = "udp"\nname = "u"\nchannels = 0\nport = 70000\n'
        '[model]\nbundle = "b"\n[batching]\nbatchsize = 3\n'
    )
    assert main(["config", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: agent config" in captured.err
    for key in ("sources[0].channels", "sources[0].port", "batching.batchsize"):
        assert f"  - {key}: got" in captured.err
    assert "did you mean 'max_batch_size'?" in captured.err
    assert "hint:" in captured.err
    assert "Traceback" not in captured.err


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "none.toml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_check_notes_files_that_are_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.toml"
    path.write_text(
        '[device]\nid = "x"\n[[sources]]\ntype = "replay"\nname = "r"\nfile = "rec.csv"\n'
        '[model]\nbundle = "b"\n'
    )
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"note: sources[0].file {tmp_path / 'rec.csv'} does not exist here" in out


def test_show_applies_env_and_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(uncomment_source_blocks(example_text()))
    monkeypatch.setenv("EDGEFLEET_DEVICE__ID", "env-dev")
    monkeypatch.setenv("EDGEFLEET_SYNC__PASSWORD", "s3cret")
    assert main(["config", "show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["device"]["id"] == "env-dev"
    assert shown["sync"]["password"] != "s3cret"
    assert main(["config", "show", str(path)]) == 0
    toml_out = capsys.readouterr().out
    assert "s3cret" not in toml_out
    again = parse_config(toml_out.replace(shown["sync"]["password"], "masked"))
    assert again.device.id == "env-dev"
    assert len(again.sources) == 5


def test_dump_toml_handles_nesting_and_quoting() -> None:
    data = {
        "a": {"x": 1, "y": None, "z": [1.5, 2.0], "s": 'q"uote\n', "inner": {"t": True}},
        "items": [{"k": "v", "sub": [{"n": 1}]}, {"k": "w", "sub": []}],
        "odd key": {"inf": float("inf")},
    }
    parsed = tomllib.loads(dump_toml(data))
    assert parsed == {
        "a": {"x": 1, "z": [1.5, 2.0], "s": 'q"uote\n', "inner": {"t": True}},
        "items": [{"k": "v", "sub": [{"n": 1}]}, {"k": "w", "sub": []}],
        "odd key": {"inf": float("inf")},
    }


def test_docs_mention_every_agent_and_source_key() -> None:
    from pydantic import BaseModel

    from edgefleet.agent import config as agent_config
    from edgefleet.agent.sources import SOURCE_TYPES
    from edgefleet.agent.sources.synthetic import DriftInjection

    docs = (Path(__file__).resolve().parents[3] / "docs" / "configuration.md").read_text()
    models: list[type[BaseModel]] = [
        agent_config.DeviceConfig,
        agent_config.ModelConfig,
        agent_config.BatchingConfig,
        agent_config.FallbackConfig,
        agent_config.DriftConfig,
        agent_config.HealthConfig,
        agent_config.PrometheusConfig,
        agent_config.LoggingConfig,
        DriftInjection,
        *(cls.config_model for cls in SOURCE_TYPES.values()),
    ]
    missing = [f"{m.__name__}.{name}" for m in models for name in m.model_fields if f"`{name}`" not in docs]
    assert missing == [], "docs/configuration.md lacks these keys"
    for key in SOURCE_TYPES:
        assert f'type = "{key}"' in docs


def test_config_without_subcommand_shows_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    for sub in ("check", "show", "example"):
        assert sub in err
