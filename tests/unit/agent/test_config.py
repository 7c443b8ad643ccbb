"""Agent config: valid files, every error listed with its key, env overrides, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.agent.config import AgentConfig, load_config, parse_config
from edgefleet.agent.sources import MqttSourceConfig, ReplaySourceConfig, UnixSourceConfig
from edgefleet.errors import ConfigError, ConfigIssue

pytestmark = pytest.mark.unit

MINIMAL = """
[device]
id = "dev-1"

[[sources]]
type = "synthetic"
name = "imu"

[model]
bundle = "bundles/demo"
"""


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def issues_of(text: str, tmp_path: Path) -> dict[str, ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return {issue.key: issue for issue in info.value.issues}


@pytest.fixture(autouse=True)
def _no_edgefleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("EDGEFLEET_"):
            monkeypatch.delenv(name)


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.device.id == "dev-1"
    assert config.sources[0].name == "imu"
    assert config.batching.max_batch_size == 16
    assert config.logging.level == "INFO"
    assert config.health.prometheus.host == "127.0.0.1"
    assert config.sync.enabled is True


def test_every_error_is_listed_with_key_value_and_expectation(tmp_path: Path) -> None:
    text = """
[device]
id = "bad id"

[[sources]]
type = "synthetic"
name = "imu"

[[sources]]
type = "synthetic"
name = "imu2"
rate_hz = -5

[model]
bundle = "b"
nan_policy = "ignore"

[batching]
max_batch_size = 0
batch_timeout_s = "soon"

[logging]
format = "xml"
"""
    issues = issues_of(text, tmp_path)
    assert set(issues) == {
        "device.id",
        "sources[1].rate_hz",
        "model.nan_policy",
        "batching.max_batch_size",
        "batching.batch_timeout_s",
        "logging.format",
    }
    assert issues["sources[1].rate_hz"].value == -5
    assert "greater than 0" in issues["sources[1].rate_hz"].expected
    assert issues["batching.max_batch_size"].value == 0
    assert "'reject'" in issues["model.nan_policy"].expected
    assert issues["device.id"].value == "bad id"
    assert "letters, digits" in issues["device.id"].expected


def test_error_message_lists_each_issue_and_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[batching]\nmax_batch_size = -1\n[drift]\npsi_threshold = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "has 2 invalid keys" in text
    assert "batching.max_batch_size: got -1" in text
    assert "drift.psi_threshold: got 0" in text
    assert "hint:" in text
    assert info.value.source == str(path)


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    issues = issues_of(MINIMAL + "\n[batching]\nbatchsize = 64\n", tmp_path)
    issue = issues["batching.batchsize"]
    assert issue.value == 64
    assert "unknown key 'batchsize' in [batching]; did you mean 'max_batch_size'?" in issue.expected


def test_unknown_key_in_a_source_suggests_that_source_types_keys(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[sources]]\ntype = "udp"\nname = "u"\nchannels = 3\nprot = 9000\n'
    issues = issues_of(text, tmp_path)
    assert "did you mean 'port'?" in issues["sources[1].prot"].expected
    assert "required" in issues["sources[1].port"].expected


def test_unknown_section_is_named(tmp_path: Path) -> None:
    issues = issues_of(MINIMAL + "\n[batchin]\nmax_batch_size = 4\n", tmp_path)
    assert "did you mean 'batching'?" in issues["batchin"].expected


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path) -> None:
    issues = issues_of(MINIMAL + "\n[drift]\nzzz = 1\n", tmp_path)
    assert (
        "known keys: enabled, interval_s, windows, min_interval_s, sample, psi_threshold, js_threshold"
        in issues["drift.zzz"].expected
    )


def test_unknown_source_type_lists_the_known_ones(tmp_path: Path) -> None:
    issues = issues_of(MINIMAL + '\n[[sources]]\ntype = "serial"\nname = "s"\n', tmp_path)
    issue = issues["sources[1].type"]
    assert issue.value == "serial"
    for known in ("replay", "synthetic", "udp", "unix", "mqtt"):
        assert known in issue.expected


def test_missing_sections_and_type_are_reported(tmp_path: Path) -> None:
    issues = issues_of('[[sources]]\nname = "x"\n', tmp_path)
    assert {"device", "model", "sources[0].type"} <= set(issues)


def test_empty_sources_list_is_refused(tmp_path: Path) -> None:
    issues = issues_of('sources = []\n[device]\nid = "a"\n[model]\nbundle = "b"\n', tmp_path)
    assert "sources" in issues


def test_duplicate_stream_names_are_refused(tmp_path: Path) -> None:
    issues = issues_of(MINIMAL + '\n[[sources]]\ntype = "synthetic"\nname = "imu"\n', tmp_path)
    assert "sources[0] and sources[1]" in issues["sources"].expected


def test_nested_source_model_errors_keep_their_path(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'name = "imu"', 'name = "imu"\n[[sources.drift]]\nkind = "tilt"\n[[sources.drift]]\nkind = "gain"'
    )
    issues = issues_of(text, tmp_path)
    assert "sources[0].drift[0].kind" in issues
    assert issues["sources[0].drift[0].kind"].value == "tilt"


def test_foreign_section_validators_are_reported(tmp_path: Path) -> None:
    issues = issues_of(MINIMAL + "\n[store]\nmax_bytes = 2000000\nhard_max_bytes = 1000000\n", tmp_path)
    assert "hard_max_bytes" in issues["store"].expected


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[device]\nid = "a"\nname = unquoted\n'))
    assert "line 3, column 8" in str(info.value)
    assert info.value.issues[0].key == "line 3, column 8"
    assert "name = unquoted" in str(info.value)


def test_missing_file_has_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "does not exist" in info.value.message
    assert info.value.hint is not None
    assert "edgefleet config example" in info.value.hint


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_env_overrides_file_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_DEVICE__ID", "from-env")
    monkeypatch.setenv("EDGEFLEET_STORE__PATH", "/data/env.db")
    monkeypatch.setenv("EDGEFLEET_BATCHING__MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("EDGEFLEET_LOGGING__LEVEL", "debug")
    config = load_config(write(tmp_path, MINIMAL + "\n[batching]\nbatch_timeout_s = 0.2\n"))
    assert config.device.id == "from-env"
    assert config.store.path == Path("/data/env.db")
    assert config.batching.max_batch_size == 7
    assert config.batching.batch_timeout_s == 0.2  # the file's other keys in that section survive
    assert config.logging.level == "DEBUG"


def test_env_error_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_BATCHING__MAX_BATCH_SIZE", "lots")
    issues = issues_of(MINIMAL, tmp_path)
    issue = issues["batching.max_batch_size"]
    assert issue.value == "lots"
    assert "EDGEFLEET_BATCHING__MAX_BATCH_SIZE" in issue.expected


def test_unknown_env_key_inside_a_section_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEFLEET_DRIFT__PSI_TRESHOLD", "0.1")
    issues = issues_of(MINIMAL, tmp_path)
    assert "did you mean 'psi_threshold'?" in issues["drift.psi_treshold"].expected


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    text = (
        MINIMAL
        + '\n[[sources]]\ntype = "replay"\nname = "r"\nfile = "data/rec.csv"\n'
        + '\n[[sources]]\ntype = "unix"\nname = "u"\npath = "/run/abs.sock"\nchannels = 2\n'
        + '\n[store]\npath = "state/store.db"\n'
        + '\n[sync.tls]\nca_file = "certs/ca.pem"\n'
    )
    config = load_config(write(conf_dir, text))
    assert config.model.bundle == conf_dir / "bundles/demo"
    replay = config.sources[1]
    assert isinstance(replay, ReplaySourceConfig)
    assert replay.file == conf_dir / "data/rec.csv"
    unix = config.sources[2]
    assert isinstance(unix, UnixSourceConfig)
    assert unix.path == Path("/run/abs.sock")
    assert config.store.path == conf_dir / "state/store.db"
    assert config.sync.tls is not None
    assert config.sync.tls.ca_file == conf_dir / "certs/ca.pem"
    assert config.device.state_dir == Path("/var/lib/edgefleet")


def test_each_source_type_parses(tmp_path: Path) -> None:
    text = MINIMAL + "".join(
        f'\n[[sources]]\nname = "s{i}"\n{body}\n'
        for i, body in enumerate(
            [
                'type = "replay"\nfile = "r.npz"\nloop = true\nspeed = 2.0',
                'type = "udp"\nport = 9000\nchannels = 6\nformat = "packed"\ntimestamped = true',
                'type = "unix"\npath = "s.sock"\nchannels = 3',
                'type = "mqtt"\ntopic = "sensors/#"\nchannels = 3\npassword = "pw"',
            ]
        )
    )
    config = parse_config(text)
    assert [s.type for s in config.sources] == ["synthetic", "replay", "udp", "unix", "mqtt"]
    mqtt = config.sources[4]
    assert isinstance(mqtt, MqttSourceConfig)
    assert mqtt.password is not None
    assert "pw" not in repr(mqtt)  # secrets never reach logs


def test_replay_file_needs_a_known_format() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + '\n[[sources]]\ntype = "replay"\nname = "r"\nfile = "rec.parquet"\n')
    assert ".csv, .npy, .npz" in info.value.issues[0].expected
    assert info.value.issues[0].key == "sources[1]"


def test_config_can_be_built_directly_for_tests() -> None:
    config = AgentConfig.model_validate(
        {"device": {"id": "x"}, "sources": [{"type": "synthetic", "name": "s"}], "model": {"bundle": "/b"}}
    )
    assert config.sources[0].type == "synthetic"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [("EDGEFLEET_SOURCES", "[not json", "sources"), ("EDGEFLEET_DEVICE__TAGS", '["a", ', "device.tags")],
)
def test_unparsable_env_json_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, key: str
) -> None:
    monkeypatch.setenv(name, value)
    issues = issues_of(MINIMAL, tmp_path)
    assert issues[key].value == value
    assert name in issues[key].expected


def test_env_json_lists_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_DEVICE__TAGS", '["a", "b"]')
    monkeypatch.setenv("EDGEFLEET_SOURCES", '[{"type": "udp", "name": "u", "port": 9, "channels": 2}]')
    config = load_config(write(tmp_path, MINIMAL))
    assert config.device.tags == ["a", "b"]
    assert [s.type for s in config.sources] == ["udp"]


def test_relative_paths_from_the_environment_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEFLEET_STORE__PATH", "data/env.db")
    config = load_config(write(tmp_path, MINIMAL))
    assert config.store.path == tmp_path / "data/env.db"
