from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.protocol import CommandBody
from edgefleet.controller.commands import CommandError, CommandService, validate_command
from edgefleet.controller.config import DatabaseConfig
from edgefleet.controller.dal import Database, IngestOutcome, open_database
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.records import IngestMessage
from edgefleet.controller.schemas import CommandRequest

pytestmark = pytest.mark.unit


def test_changes_since_a_version() -> None:
    changes = FleetChanges()
    start = changes.version
    assert not changes.since(start)
    changes.publish(IngestOutcome(changed_devices={"a", "b"}, new_devices=["b"], status_changes={"a": False}))
    changes.command_changed("c1")
    found = changes.since(start)
    assert found.version == start + 2
    assert (sorted(found.devices), found.new_devices, found.status, found.commands) == (
        ["a", "b"],
        ["b"],
        {"a": False},
        ["c1"],
    )
    assert not changes.since(found.version)


@pytest.mark.parametrize(
    ("name", "args", "needle"),
    [
        ("set_config", {}, "args.key"),
        ("set_config", {"key": "a.b"}, "args.value"),
        ("set_config", {"key": "a", "value": 1, "x": 2}, "key and value only"),
        ("restart_pipeline", {"now": True}, "takes no args"),
    ],
)
def test_invalid_commands_name_the_problem(name: str, args: dict[str, object], needle: str) -> None:
    with pytest.raises(CommandError, match=needle):
        validate_command(CommandRequest.model_validate({"name": name, "args": args}))


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(DatabaseConfig(sqlite_path=tmp_path / "c.db"))
    db.ingest([IngestMessage("dev-1", "1:0", "telemetry", 1.0)], result_bucket_s=60)
    yield db
    db.close()


def test_send_records_and_publishes_a_protocol_message(database: Database) -> None:
    published: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes) -> str | None:
        published.append((topic, payload))
        return None

    service = CommandService(database, publish)
    record = service.send(
        "dev-1", CommandRequest(name="set_config", args={"key": "a", "value": [1, 2]}), created_by="t"
    )
    assert record.status == "sent"
    [(topic, payload)] = published
    assert topic == "edgefleet/v1/dev-1/cmd"
    envelope = decode_message(topic, payload)
    assert isinstance(envelope.body, CommandBody)
    assert (envelope.body.command_id, envelope.body.command, envelope.body.args) == (
        record.command_id,
        "set_config",
        {"key": "a", "value": [1, 2]},
    )
    assert envelope.message_id > 0
    with pytest.raises(CommandError) as info:
        service.send("ghost", CommandRequest(name="report_status"), created_by="t")
    assert info.value.status == 404


def test_unpublishable_command_is_recorded_failed(database: Database) -> None:
    service = CommandService(database, lambda topic, payload: "not connected")
    record = service.send("dev-1", CommandRequest(name="restart_pipeline"), created_by="t")
    assert (record.status, record.detail) == ("failed", "not connected")
    assert database.list_commands("dev-1")[0].status == "failed"
