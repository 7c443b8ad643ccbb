"""The campaign runner on a real database (SQLite, and PostgreSQL when present) with a real OTA
host and real bundle files: stage order, halting past the failure limit, time-outs, refused
requests, rollback commands, and device names and tags from status messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.protocol import CommandBody, OtaOfferBody
from edgefleet.controller.commands import CommandService
from edgefleet.controller.dal import Database
from edgefleet.controller.ota_campaign_schemas import CampaignRequest
from edgefleet.controller.ota_campaigns import (
    CampaignError,
    CampaignRunner,
    campaign_view,
    create_campaign,
    request_rollback,
)
from edgefleet.controller.ota_hosting import OtaHost
from edgefleet.controller.ota_schemas import OtaDeviceState
from edgefleet.controller.records import IngestMessage, StatusUpdate
from tests.support.ota import versioned_bundle
from tests.unit.controller.db_fixtures import DB_KINDS, throwaway_database

pytestmark = pytest.mark.integration

DEVICES = [f"dev-{i}" for i in range(4)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Sent(list[tuple[str, bytes]]):
    def publish(self, topic: str, payload: bytes) -> bool:
        self.append((topic, payload))
        return True

    def command_publish(self, topic: str, payload: bytes) -> str | None:
        self.append((topic, payload))
        return None

    def offers(self) -> list[OtaOfferBody]:
        bodies = [decode_message(t, p).body for t, p in self]
        return [b for b in bodies if isinstance(b, OtaOfferBody)]

    def commands(self) -> list[tuple[str, CommandBody]]:
        envelopes = [decode_message(t, p) for t, p in self]
        return [(e.device_id, e.body) for e in envelopes if isinstance(e.body, CommandBody)]


@pytest.fixture(params=DB_KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with throwaway_database(request.param, tmp_path) as (db, _config):
        messages = [
            IngestMessage(
                device_id=d,
                message_id=None,
                kind="status",
                received_at=1.0,
                status=StatusUpdate(
                    online=True, ts=1.0, name=f"Press {i}", tags=["site:lyon"] if i < 3 else ["site:oslo"]
                ),
            )
            for i, d in enumerate(DEVICES)
        ]
        db.ingest(messages, result_bucket_s=60)
        yield db


@pytest.fixture
def rig(database: Database, tmp_path: Path) -> tuple[CampaignRunner, Sent, Clock, Path]:
    sent, clock = Sent(), Clock()
    host = OtaHost(database, sent.publish, clock=clock)
    commands = CommandService(database, sent.command_publish, clock=clock)
    return (
        CampaignRunner(database, host, commands, clock=clock),
        sent,
        clock,
        versioned_bundle(tmp_path, "1.1.0"),
    )


def report(
    database: Database, clock: Clock, offer: OtaOfferBody, state: str, detail: str | None = None
) -> None:
    database.put_ota_state(
        OtaDeviceState(
            device_id=offer.device_id,
            offer_id=offer.offer_id,
            campaign_id=offer.campaign_id,
            state=state,  # type: ignore[arg-type]
            detail=detail,
            updated_at=clock(),
        )
    )


def test_names_and_tags_reach_the_registry(database: Database) -> None:
    device = database.get_device("dev-1")
    assert device is not None
    assert (device.name, device.tags) == ("Press 1", ["site:lyon"])
    # A later status without them (an older agent, the last will) keeps what is known.
    database.ingest(
        [IngestMessage("dev-1", None, "status", 2.0, status=StatusUpdate(online=False, ts=2.0))],
        result_bucket_s=60,
    )
    device = database.get_device("dev-1")
    assert device is not None
    assert (device.name, device.tags, device.online) == ("Press 1", ["site:lyon"], False)
    assert [d.device_id for d in database.list_devices(search="oslo").devices] == ["dev-3"]


def test_stages_advance_only_on_done_and_complete(
    database: Database, rig: tuple[CampaignRunner, Sent, Clock, Path]
) -> None:
    runner, sent, clock, tar = rig
    view = create_campaign(
        database,
        runner.host,
        CampaignRequest(bundle=str(tar), tag="site:lyon", stages=[30, 100]),
        clock=clock,
    )
    cid = view.campaign.campaign_id
    assert [(d.device_id, d.stage) for d in view.devices] == [("dev-0", 0), ("dev-1", 1), ("dev-2", 1)]
    runner.tick()
    assert [o.device_id for o in sent.offers()] == ["dev-0"]
    report(database, clock, sent.offers()[0], "probation")
    runner.tick()
    assert len(sent.offers()) == 1  # probation is not a verdict yet
    report(database, clock, sent.offers()[0], "done")
    runner.tick()
    assert [o.device_id for o in sent.offers()] == ["dev-0", "dev-1", "dev-2"]
    assert all(o.campaign_id == cid for o in sent.offers())
    for offer in sent.offers()[1:]:
        report(database, clock, offer, "done")
    runner.tick()
    done = campaign_view(database, cid)
    assert done.campaign.status == "completed"
    assert done.counts["ok"] == 3
    assert "3 of 3 devices updated" in (done.campaign.detail or "")


def test_a_failure_past_the_limit_halts_and_a_timeout_counts(
    database: Database, rig: tuple[CampaignRunner, Sent, Clock, Path]
) -> None:
    runner, sent, clock, tar = rig
    request = CampaignRequest(
        bundle=str(tar), all=True, stages=[50, 100], max_failures=1, device_timeout_s=60
    )
    cid = create_campaign(database, runner.host, request, clock=clock).campaign.campaign_id
    runner.tick()
    first, _second = sent.offers()
    report(database, clock, first, "rolled_back", "mean confidence 0.3 is 0.4x the previous model's")
    runner.tick()
    view = campaign_view(database, cid)
    assert view.campaign.status == "running"  # one failure is allowed
    clock.now += 61  # the second device never answers
    runner.tick()
    view = campaign_view(database, cid)
    assert view.campaign.status == "halted"
    assert "dev-0: rolled_back: mean confidence" in (view.campaign.detail or "")
    assert "dev-1: no final state 60 s after the offer" in (view.campaign.detail or "")
    assert len(sent.offers()) == 2  # stage 2 never offered
    assert view.counts == {"pending": 2, "in_progress": 0, "ok": 0, "failed": 2, "rolled_back": 0}
    runner.tick()
    assert len(sent.offers()) == 2


def test_rollback_commands_go_to_the_devices_that_activated(
    database: Database, rig: tuple[CampaignRunner, Sent, Clock, Path]
) -> None:
    runner, sent, clock, tar = rig
    request = CampaignRequest(bundle=str(tar), devices=["dev-0", "dev-1", "dev-2"], max_failures=3)
    cid = create_campaign(database, runner.host, request, clock=clock).campaign.campaign_id
    runner.tick()
    a, b, c = sent.offers()
    report(database, clock, a, "done")
    report(database, clock, b, "probation")
    report(database, clock, c, "refused", "downgrade: 1.1.0 is older than 1.2.0")
    runner.tick()
    assert request_rollback(database, cid, clock=clock).campaign.status == "rolling_back"
    runner.tick()
    view = campaign_view(database, cid)
    assert view.campaign.status == "rolled_back"
    assert sorted((d, body.command) for d, body in sent.commands()) == [
        ("dev-0", "rollback_model"),
        ("dev-1", "rollback_model"),
    ]
    assert [d.rollback_command_id is not None for d in view.devices] == [True, True, False]
    runner.tick()
    assert len(sent.commands()) == 2  # sent once
    assert request_rollback(database, cid, clock=clock).campaign.status == "rolled_back"


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        ({"tag": "site:lyon", "stages": [50, 25, 100]}, 400, "do not increase"),
        ({"tag": "site:lyon", "stages": [50]}, 400, "the last stage is 50%"),
        ({"tag": "site:lyon", "stages": [0, 100]}, 400, "outside (0, 100]"),
        ({"tag": "site:paris"}, 404, "no known device reports tag 'site:paris'"),
        ({"devices": ["dev-0", "ghost"]}, 404, "unknown device(s): ghost"),
        ({"tag": "site:lyon", "all": True}, 400, "choose the targets once"),
        ({}, 400, "choose the targets once"),
    ],
)
def test_bad_requests_are_refused_with_a_hint(
    database: Database,
    rig: tuple[CampaignRunner, Sent, Clock, Path],
    request_args: dict[str, object],
    status: int,
    message: str,
) -> None:
    runner, _sent, clock, tar = rig
    with pytest.raises(CampaignError) as refused:
        create_campaign(database, runner.host, CampaignRequest(bundle=str(tar), **request_args), clock=clock)  # type: ignore[arg-type]
    assert refused.value.status == status
    assert message in refused.value.message
    assert refused.value.hint
    assert database.list_campaigns() == []


def test_unknown_bundle_and_overlapping_campaigns_are_refused(
    database: Database, rig: tuple[CampaignRunner, Sent, Clock, Path], tmp_path: Path
) -> None:
    runner, _sent, clock, tar = rig
    with pytest.raises(CampaignError, match=r"no bundle basicmotions-edge-tflite 9\.9\.9 is registered"):
        create_campaign(
            database,
            runner.host,
            CampaignRequest(bundle="basicmotions-edge-tflite@9.9.9", all=True),
            clock=clock,
        )
    with pytest.raises(CampaignError, match=r"is not a bundle \.tar file"):
        create_campaign(database, runner.host, CampaignRequest(bundle=str(tmp_path / "nope.tar"), all=True))
    create_campaign(database, runner.host, CampaignRequest(bundle=str(tar), devices=["dev-0"]), clock=clock)
    with pytest.raises(CampaignError, match="dev-0 are in a running campaign") as busy:
        create_campaign(
            database,
            runner.host,
            CampaignRequest(bundle="basicmotions-edge-tflite@1.1.0", devices=["dev-0", "dev-1"]),
            clock=clock,
        )
    assert busy.value.status == 409
    with pytest.raises(CampaignError, match="no campaign 'nope'"):
        request_rollback(database, "nope")


def test_rollback_waits_for_a_device_still_validating(
    database: Database, rig: tuple[CampaignRunner, Sent, Clock, Path]
) -> None:
    runner, sent, clock, tar = rig
    request = CampaignRequest(bundle=str(tar), devices=["dev-0", "dev-1"], device_timeout_s=60)
    cid = create_campaign(database, runner.host, request, clock=clock).campaign.campaign_id
    runner.tick()
    a, b = sent.offers()
    report(database, clock, a, "done")
    report(database, clock, b, "validating")
    request_rollback(database, cid, clock=clock)
    runner.tick()
    assert [d for d, _ in sent.commands()] == ["dev-0"]
    assert campaign_view(database, cid).campaign.status == "rolling_back"  # dev-1 may still activate
    report(database, clock, b, "probation")
    runner.tick()
    assert [d for d, _ in sent.commands()] == ["dev-0", "dev-1"]
    assert campaign_view(database, cid).campaign.status == "rolled_back"


def test_rollback_gives_up_on_a_device_past_its_time_out(
    database: Database, rig: tuple[CampaignRunner, Sent, Clock, Path]
) -> None:
    runner, sent, clock, tar = rig
    request = CampaignRequest(bundle=str(tar), devices=["dev-0"], device_timeout_s=60)
    cid = create_campaign(database, runner.host, request, clock=clock).campaign.campaign_id
    runner.tick()
    request_rollback(database, cid, clock=clock)
    runner.tick()
    assert campaign_view(database, cid).campaign.status == "rolling_back"  # offered, no answer yet
    clock.now += 61
    runner.tick()
    view = campaign_view(database, cid)
    assert view.campaign.status == "rolled_back"
    assert view.campaign.detail == "rollback_model sent to 0 device(s)"
    assert sent.commands() == []
