from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgefleet.cloud_sync import topics
from edgefleet.controller import config as controller_config
from edgefleet.controller.config import ControllerConfig, example_config_text, load_controller_config
from edgefleet.errors import ConfigError

pytestmark = pytest.mark.unit


def test_example_config_is_valid_and_matches_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(example_config_text())
    loaded = load_controller_config(path)
    defaults = ControllerConfig()
    assert loaded.model_dump(exclude={"database"}) == defaults.model_dump(exclude={"database"})
    # Relative SQLite paths resolve beside the config file, not the working directory.
    assert loaded.database.sqlite_path == tmp_path / "controller.db"


def test_unknown_and_invalid_keys_are_all_listed(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[mqtt]\nport = 70000\nprotocl = "mqtt5"\n[http]\nport = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_controller_config(path)
    keys = sorted(issue.key for issue in info.value.issues)
    assert keys == ["http.port", "mqtt.port", "mqtt.protocl"]
    issues = {issue.key: issue for issue in info.value.issues}
    # Unknown keys get the same spelling help as the agent's config (edgefleet/config_issues.py).
    assert issues["mqtt.protocl"].expected == "unknown key 'protocl' in [mqtt]; did you mean 'protocol'?"
    assert issues["mqtt.port"].value == 70000
    assert info.value.hint


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[mqtt\nport = 1", "not valid TOML"),
        ('[database]\nurl = "mysql://x"', "not supported"),
        ('[mqtt]\nshare_group = "a/b"', "share_group"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_controller_config(path)


def test_missing_file_hints_at_example_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_controller_config(tmp_path / "nope.toml")
    assert "example-config" in (info.value.hint or "")


def test_overrides_and_database_kinds(tmp_path: Path) -> None:
    config = load_controller_config(
        None, overrides={"database.url": "postgresql://u@h/db", "http.port": 9000}
    )
    assert config.database.is_postgres
    assert config.http.port == 9000
    sqlite = load_controller_config(None, overrides={"database.url": f"sqlite:///{tmp_path}/x.db"})
    assert not sqlite.database.is_postgres
    assert sqlite.database.resolved_sqlite_path() == tmp_path / "x.db"


def test_every_uplink_kind_of_the_protocol_can_be_configured(tmp_path: Path) -> None:
    # One list of message kinds: the controller's come from cloud_sync/topics.py.
    assert controller_config.UPLINK_KINDS is topics.UPLINK_KINDS
    path = tmp_path / "controller.toml"
    path.write_text(f"[ingest]\nkinds = {list(topics.UPLINK_KINDS)!r}\n".replace("'", '"'))
    config = load_controller_config(path)
    assert tuple(config.ingest.kinds) == topics.UPLINK_KINDS
    # The OTA host reads ota/progress and ota/chunk_request (controller/ota_hosting.py).
    assert config.ingest.inactive_kinds() == ["infer/request"]
    warning = controller_config.inactive_kinds_warning(config) or ""
    assert "'infer/request': not active yet" in warning
    assert "stores nothing" in warning


def test_the_default_kinds_are_the_stored_ones_and_say_nothing() -> None:
    config = ControllerConfig()
    assert tuple(config.ingest.kinds) == controller_config.STORED_KINDS
    assert set(controller_config.STORED_KINDS) <= set(topics.UPLINK_KINDS)
    assert controller_config.inactive_kinds_warning(config) is None


def test_an_unknown_kind_is_named_with_the_kinds_expected(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('[ingest]\nkinds = ["results", "ota/status"]\n')
    with pytest.raises(ConfigError) as info:
        load_controller_config(path)
    (issue,) = info.value.issues
    assert issue.key == "ingest.kinds[1]"
    assert issue.value == "ota/status"
    assert "'infer/request'" in issue.expected


def test_the_service_warns_at_start_up_about_kinds_it_does_not_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edgefleet.controller.service import ControllerService

    config = load_controller_config(
        None,
        overrides={"database.sqlite_path": tmp_path / "c.db", "ingest.kinds": ["results", "infer/request"]},
    )
    with caplog.at_level(logging.WARNING, logger="edgefleet.controller.service"):
        service = ControllerService(config)
    service.database.close()
    assert any("'infer/request': not active yet" in r.getMessage() for r in caplog.records)


def test_a_key_like_no_other_lists_the_known_keys_of_its_section(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[http]\nzzz = 1\n")
    with pytest.raises(ConfigError) as info:
        load_controller_config(path)
    (issue,) = info.value.issues
    assert issue.key == "http.zzz"
    assert issue.expected.startswith("unknown key 'zzz' in [http]; known keys: host, port, cookie_secure")
