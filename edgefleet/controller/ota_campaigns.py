"""Staged OTA campaigns (issue 16): offer a bundle to a fleet in stages, halt on failures, roll back.

A campaign is stored (``ota_campaigns``, ``ota_campaign_devices``) by :func:`create_campaign`, from
the HTTP API or straight into the database by ``edgefleet ota push``; the controller's
:class:`CampaignRunner` then drives every running campaign from the database on each tick, so a
campaign created by the CLI, or one left running when the controller restarted, goes on.

Stage ``k`` covers the first ``ceil(stages[k]% of the targets)`` devices (cumulative). A device
succeeds when it reports ``done`` (the agent's validation and probation passed: error rate,
latency, confidence, fallback share and drift alerts, see docs/ota.md) and the controller has not
seen it start drifting since its offer; it fails on ``failed``, ``refused`` or ``rolled_back``, or
with no final state ``device_timeout_s`` after its offer. The next stage is offered once every
device of the current one has an outcome; one failure more than ``max_failures`` halts the
campaign (nothing more is offered). A rollback sends ``rollback_model`` to every device that
activated the campaign's bundle, waiting (up to ``device_timeout_s`` after each offer) for those
still downloading or validating.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from edgefleet.controller.commands import CommandError, CommandService
from edgefleet.controller.dal import Database
from edgefleet.controller.ota_campaign_schemas import (
    CampaignDevice,
    CampaignRecord,
    CampaignRequest,
    CampaignView,
)
from edgefleet.controller.ota_hosting import OtaError, OtaHost
from edgefleet.controller.ota_schemas import BundleInfo
from edgefleet.controller.schemas import CommandRequest, DeviceInfo
from edgefleet.errors import EdgefleetError

__all__ = ["CampaignError", "CampaignRunner", "campaign_view", "create_campaign", "request_rollback"]

log = logging.getLogger(__name__)

_OK_STATES = frozenset({"done"})
_BAD_STATES = frozenset({"failed", "refused", "rolled_back"})
_ACTIVATED_STATES = frozenset({"activating", "probation", "done"})
"""States after which the device serves (or served) the campaign's model: a rollback targets them."""
_LIVE = ("running", "rolling_back")


class CampaignError(EdgefleetError):
    """A campaign cannot be created or changed (400), or is unknown (404)."""

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def parse_stages(stages: list[float]) -> list[float]:
    if not stages:
        raise CampaignError(
            "no stages given", hint="give increasing percentages ending at 100, e.g. 5,25,100"
        )
    for value in stages:
        if not (0 < value <= 100) or math.isnan(value):
            raise CampaignError(
                f"stage {value:g}% is outside (0, 100]", hint="give percentages of the targets, e.g. 5,25,100"
            )
    if any(b <= a for a, b in itertools.pairwise(stages)):
        raise CampaignError(
            f"stages {','.join(f'{s:g}' for s in stages)} do not increase",
            hint="stages are cumulative: each one a larger share, e.g. 5,25,100",
        )
    if stages[-1] != 100:
        raise CampaignError(
            f"the last stage is {stages[-1]:g}%, not 100%", hint="end the stages with 100, e.g. 5,25,100"
        )
    return list(stages)


def stage_sizes(stages: list[float], count: int) -> list[int]:
    """Cumulative device counts per stage: at least one device each, never more than ``count``."""
    return [min(count, max(1, math.ceil(count * pct / 100 - 1e-9))) for pct in stages]


def resolve_bundle(database: Database, host: OtaHost, ref: str) -> BundleInfo:
    """``NAME@VERSION`` of a registered bundle, or a bundle ``.tar`` path (registered now)."""
    if "@" in ref and not Path(ref).exists():
        name, _, version = ref.partition("@")
        info = database.get_ota_bundle(name, version)
        if info is None:
            raise CampaignError(
                f"no bundle {name} {version} is registered",
                status=404,
                hint="pass the bundle .tar's path instead (it is registered then), or GET /api/ota/bundles",
            )
        return info
    try:
        return host.register(Path(ref))
    except OtaError as exc:
        raise CampaignError(exc.message, status=exc.status, hint=exc.hint) from None


def resolve_targets(
    database: Database, request: CampaignRequest
) -> tuple[list[DeviceInfo], dict[str, object]]:
    chosen = sum((bool(request.devices), request.tag is not None, request.all))
    if chosen != 1:
        raise CampaignError(
            "choose the targets once: devices, a tag or all", hint="pass --device ID…, --tag TAG or --all"
        )
    known = database.list_devices(limit=100_000, sort="device_id").devices
    target: dict[str, object]
    if request.all:
        target = {"all": True}
        targets = known
    elif request.tag is not None:
        targets = [d for d in known if request.tag in d.tags]
        target = {"tag": request.tag}
        if not targets:
            raise CampaignError(
                f"no known device reports tag {request.tag!r}",
                status=404,
                hint="tags come from each agent's [device] tags; `edgefleet controller devices --json`"
                " lists them",
            )
    else:
        by_id = {d.device_id: d for d in known}
        unknown = [d for d in dict.fromkeys(request.devices) if d not in by_id]
        if unknown:
            raise CampaignError(
                f"unknown device(s): {', '.join(unknown)}",
                status=404,
                hint="`edgefleet controller devices` lists the devices this controller knows",
            )
        targets = [by_id[d] for d in dict.fromkeys(request.devices)]
        target = {"devices": [d.device_id for d in targets]}
    if not targets:
        raise CampaignError(
            "no device to update", status=404, hint="no device is known to this controller yet"
        )
    return targets, target


def create_campaign(
    database: Database,
    host: OtaHost,
    request: CampaignRequest,
    *,
    created_by: str | None = None,
    clock: Callable[[], float] = time.time,
) -> CampaignView:
    """Check and store a new campaign (status ``running``); the runner makes its offers."""
    stages = parse_stages(request.stages)
    targets, target = resolve_targets(database, request)
    bundle = resolve_bundle(database, host, request.bundle)
    busy = [c.campaign_id for c in database.list_campaigns(statuses=_LIVE)]
    overlapping = _devices_in(database, busy) & {d.device_id for d in targets}
    if overlapping:
        raise CampaignError(
            f"device(s) {', '.join(sorted(overlapping))} are in a running campaign",
            status=409,
            hint="wait for it to end, or roll it back (`edgefleet ota rollback CAMPAIGN`)",
        )
    sizes = stage_sizes(stages, len(targets))
    now = clock()
    campaign = CampaignRecord(
        campaign_id=uuid.uuid4().hex[:12],
        bundle_name=bundle.name,
        bundle_version=bundle.version,
        target=target,
        stages=stages,
        shadow_s=request.shadow_s,
        max_failures=request.max_failures,
        device_timeout_s=request.device_timeout_s,
        status="running",
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    members = [
        CampaignDevice(
            campaign_id=campaign.campaign_id,
            device_id=d.device_id,
            position=i,
            stage=next(k for k, size in enumerate(sizes) if i < size),
        )
        for i, d in enumerate(targets)
    ]
    database.put_campaign(campaign, members)
    return campaign_view(database, campaign.campaign_id)


def _devices_in(database: Database, campaign_ids: list[str]) -> set[str]:
    return {d.device_id for cid in campaign_ids for d in database.campaign_devices(cid)}


def request_rollback(
    database: Database, campaign_id: str, *, clock: Callable[[], float] = time.time
) -> CampaignView:
    """Mark the campaign for rollback; the runner sends the commands on its next tick."""
    campaign = database.get_campaign(campaign_id)
    if campaign is None:
        raise CampaignError(
            f"no campaign {campaign_id!r}", status=404, hint="`edgefleet ota status` lists the campaigns"
        )
    if campaign.status in ("rolling_back", "rolled_back"):
        return campaign_view(database, campaign_id)
    database.update_campaign(campaign_id, at=clock(), status="rolling_back", detail="rollback requested")
    return campaign_view(database, campaign_id)


def campaign_view(database: Database, campaign_id: str) -> CampaignView:
    campaign = database.get_campaign(campaign_id)
    if campaign is None:
        raise CampaignError(
            f"no campaign {campaign_id!r}", status=404, hint="`edgefleet ota status` lists the campaigns"
        )
    members = database.campaign_devices(campaign_id)
    states = database.ota_offer_states([m.offer_id for m in members if m.offer_id])
    devices: list[CampaignDevice] = []
    counts = {"pending": 0, "in_progress": 0, "ok": 0, "failed": 0, "rolled_back": 0}
    for m in members:
        state = states.get(m.offer_id) if m.offer_id else None
        info = database.get_device(m.device_id)
        devices.append(
            m.model_copy(
                update={
                    "state": state[0] if state else None,
                    "progress": state[1] if state else None,
                    "name": info.name if info else None,
                }
            )
        )
        if m.rollback_command_id is not None:
            counts["rolled_back"] += 1
        elif m.outcome is None:
            counts["pending" if m.offer_id is None else "in_progress"] += 1
        else:
            counts["ok" if m.outcome == "ok" else "failed"] += 1
    return CampaignView(campaign=campaign, devices=devices, counts=counts)


class CampaignRunner:
    """Drives the running campaigns from the database: one thread, one tick per ``interval_s``."""

    def __init__(
        self,
        database: Database,
        host: OtaHost,
        commands: CommandService,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.host = host
        self.commands = commands
        self.interval_s = interval_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="edgefleet-ota-campaigns", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # a database hiccup must not end the campaigns for good
                log.exception("OTA campaigns: tick failed")

    def tick(self) -> None:
        for campaign in self.database.list_campaigns(statuses=_LIVE):
            if campaign.status == "running":
                self._advance(campaign)
            else:
                self._roll_back(campaign)

    # --- running ---------------------------------------------------------------------------
    def _advance(self, campaign: CampaignRecord) -> None:
        members = self.database.campaign_devices(campaign.campaign_id)
        states = self.database.ota_offer_states([m.offer_id for m in members if m.offer_id])
        now = self.clock()
        for m in members:
            if m.offer_id is None or m.outcome is not None:
                continue
            outcome = self._outcome(campaign, m, states.get(m.offer_id), now)
            if outcome is not None:
                m_new = m.model_copy(update={"outcome": outcome[0], "detail": outcome[1]})
                self.database.update_campaign_device(m_new)
                members[m.position] = m_new
        failed = [m for m in members if m.outcome in ("failed", "timeout")]
        if len(failed) > campaign.max_failures:
            detail = (
                f"halted: {len(failed)} device(s) failed (at most {campaign.max_failures} allowed): "
                + "; ".join(f"{m.device_id}: {m.detail}" for m in failed[:5])
            )
            if self.database.update_campaign(
                campaign.campaign_id, at=now, status="halted", detail=detail, only_if_status=("running",)
            ):
                log.warning("OTA campaign %s %s", campaign.campaign_id, detail)
            return
        stage = campaign.stage
        in_stage = [m for m in members if m.stage <= stage]
        if all(m.offer_id is not None and m.outcome is not None for m in in_stage):
            if stage + 1 >= len(campaign.stages):
                self.database.update_campaign(
                    campaign.campaign_id,
                    at=now,
                    status="completed",
                    detail=f"{sum(m.outcome == 'ok' for m in members)} of {len(members)} devices updated",
                    only_if_status=("running",),
                )
                return
            stage += 1
            self.database.update_campaign(
                campaign.campaign_id, at=now, stage=stage, only_if_status=("running",)
            )
        for m in members:
            if m.stage <= stage and m.offer_id is None:
                self._offer(campaign, m, now)

    def _outcome(
        self,
        campaign: CampaignRecord,
        member: CampaignDevice,
        state: tuple[str, float, str | None] | None,
        now: float,
    ) -> tuple[str, str] | None:
        if state is not None and state[0] in _OK_STATES:
            info = self.database.get_device(member.device_id)
            if info is not None and info.drifted and not member.drifted_before:
                return "failed", "drift alert on the device since the update"
            return "ok", "validation and probation passed"
        if state is not None and state[0] in _BAD_STATES:
            return "failed", f"{state[0]}: {state[2] or 'no reason given'}"
        if member.offered_at is not None and now - member.offered_at > campaign.device_timeout_s:
            last = state[0] if state is not None else "no progress reported"
            return "timeout", f"no final state {campaign.device_timeout_s:g} s after the offer (last: {last})"
        return None

    def _offer(self, campaign: CampaignRecord, member: CampaignDevice, now: float) -> None:
        bundle = self.database.get_ota_bundle(campaign.bundle_name, campaign.bundle_version)
        info = self.database.get_device(member.device_id)
        update: dict[str, object] = {"offered_at": now, "drifted_before": bool(info and info.drifted)}
        try:
            if bundle is None:
                raise OtaError(
                    f"bundle {campaign.bundle_name} {campaign.bundle_version} is no longer registered"
                )
            body = self.host.offer(
                member.device_id, bundle, shadow_s=campaign.shadow_s, campaign_id=campaign.campaign_id
            )
            update["offer_id"] = body.offer_id
        except OtaError as exc:
            if exc.status == 503:
                return  # not connected to the broker: offer again on a later tick
            update.update(offer_id="", outcome="failed", detail=f"offer not sent: {exc.message}")
        self.database.update_campaign_device(member.model_copy(update=update))

    # --- rollback --------------------------------------------------------------------------
    def _roll_back(self, campaign: CampaignRecord) -> None:
        members = self.database.campaign_devices(campaign.campaign_id)
        states = self.database.ota_offer_states([m.offer_id for m in members if m.offer_id])
        pending = 0
        now = self.clock()
        for m in members:
            state = states.get(m.offer_id) if m.offer_id else None
            if m.rollback_command_id is not None or not m.offer_id:
                continue
            if state is None or state[0] not in _ACTIVATED_STATES:
                # Still downloading or validating: wait for it to activate (then roll it back) or
                # to end, but no longer than the campaign's device time-out.
                in_flight = state is None or state[0] not in _BAD_STATES
                if in_flight and m.offered_at is not None and now - m.offered_at <= campaign.device_timeout_s:
                    pending += 1
                continue
            try:
                record = self.commands.send(
                    m.device_id,
                    CommandRequest(name="rollback_model"),
                    created_by=f"campaign {campaign.campaign_id}",
                )
            except CommandError as exc:
                log.warning(
                    "OTA campaign %s: rollback of %s not sent: %s", campaign.campaign_id, m.device_id, exc
                )
                pending += 1
                continue
            if record.status == "failed":
                pending += 1  # not connected: try again on the next tick
                continue
            self.database.update_campaign_device(
                m.model_copy(update={"rollback_command_id": record.command_id})
            )
        if pending == 0:
            sent = sum(
                1 for m in self.database.campaign_devices(campaign.campaign_id) if m.rollback_command_id
            )
            self.database.update_campaign(
                campaign.campaign_id,
                at=self.clock(),
                status="rolled_back",
                detail=f"rollback_model sent to {sent} device(s)",
                only_if_status=("rolling_back",),
            )
