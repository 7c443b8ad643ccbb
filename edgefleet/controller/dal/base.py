"""The controller's one data-access interface; SQLite and PostgreSQL implement it."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from edgefleet.controller.drift_counts import DriftCountsRow
from edgefleet.controller.fallback_stats import DeviceFallback
from edgefleet.controller.hard_examples import HardExample
from edgefleet.controller.ota_campaign_schemas import CampaignDevice, CampaignRecord
from edgefleet.controller.ota_schemas import BundleInfo, OfferRecord, OtaDeviceState
from edgefleet.controller.overview import OverviewPage, OverviewSort
from edgefleet.controller.records import IngestMessage, LateAnswer
from edgefleet.controller.schemas import (
    CommandRecord,
    CommandStatus,
    DeliveryReport,
    DeviceDetail,
    DeviceInfo,
    DeviceList,
    DeviceSort,
    DriftReport,
    EventRecord,
    FleetSummary,
    ResultsSummary,
    Role,
    TelemetrySeries,
    TokenInfo,
)

__all__ = ["Database", "IngestOutcome", "PurgeReport", "Resolution", "RetentionCutoffs"]

Resolution = Literal["raw", "minute", "hour", "auto"]


@dataclass
class IngestOutcome:
    """What one ingest transaction did. ``changed_devices`` feeds the live stream."""

    stored: int = 0
    duplicates: int = 0
    new_devices: list[str] = field(default_factory=list)
    changed_devices: set[str] = field(default_factory=set)
    status_changes: dict[str, bool] = field(default_factory=dict)
    acked_commands: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RetentionCutoffs:
    """Rows older than each epoch timestamp are deleted."""

    raw_telemetry: float
    minute_aggregates: float
    hour_aggregates: float
    results: float
    events: float
    drift: float
    commands: float
    dedup: float
    sessions: float
    hard_examples: float = 0.0


@dataclass
class PurgeReport:
    deleted: dict[str, int] = field(default_factory=dict)
    aggregated_rows: int = 0


class Database(abc.ABC):
    """Storage for the controller. Thread-safe: the ingest writer and the HTTP workers share one."""

    dialect: str

    # --- life -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def migrate(self) -> list[int]:
        """Apply pending numbered migrations; returns the versions applied now."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- ingest ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def ingest(self, messages: Sequence[IngestMessage], *, result_bucket_s: int) -> IngestOutcome:
        """Store a batch in one transaction, skipping (device_id, message_id) pairs already stored."""

    # --- devices and their data -----------------------------------------------------------------
    @abc.abstractmethod
    def list_devices(
        self,
        *,
        online: bool | None = None,
        model_version: str | None = None,
        search: str | None = None,
        sort: DeviceSort = "device_id",
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> DeviceList: ...

    @abc.abstractmethod
    def get_device(self, device_id: str) -> DeviceInfo | None: ...

    @abc.abstractmethod
    def device_detail(self, device_id: str) -> DeviceDetail | None: ...

    @abc.abstractmethod
    def delivery_report(self, device_id: str) -> DeliveryReport | None:
        """Results received and message_id ranges lost on the way (None: unknown device)."""

    @abc.abstractmethod
    def telemetry(
        self,
        device_id: str,
        metric: str,
        *,
        since: float,
        until: float,
        resolution: Resolution = "auto",
        raw_horizon: float | None = None,
        limit: int = 10_000,
    ) -> TelemetrySeries: ...

    @abc.abstractmethod
    def telemetry_metrics(self, device_id: str) -> list[str]: ...

    @abc.abstractmethod
    def drift_reports(self, device_id: str, *, since: float, limit: int = 100) -> list[DriftReport]: ...

    @abc.abstractmethod
    def drift_counts(
        self,
        *,
        since: float,
        until: float,
        device_id: str | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
    ) -> list[DriftCountsRow]:
        """Raw counts of the version 2 drift reports with ``since <= ts < until``, oldest first."""

    @abc.abstractmethod
    def drift_model_versions(self) -> list[tuple[str | None, str | None]]:
        """Every (model name, model version) with merged-ready drift reports."""

    @abc.abstractmethod
    def events(
        self, device_id: str | None, *, since: float, kind: str | None = None, limit: int = 100
    ) -> list[EventRecord]: ...

    @abc.abstractmethod
    def results_summary(
        self, device_id: str | None, *, since: float, until: float, bucket_s: int
    ) -> ResultsSummary: ...

    @abc.abstractmethod
    def fleet_summary(self, *, now: float, window_s: int) -> FleetSummary: ...

    @abc.abstractmethod
    def late_answers(self, device_id: str, *, limit: int = 100) -> list[LateAnswer]:
        """The device's late cloud answers (``result_update``), newest window first."""

    @abc.abstractmethod
    def fleet_overview(
        self,
        *,
        online: bool | None = None,
        model_version: str | None = None,
        search: str | None = None,
        drifted: bool | None = None,
        sort: OverviewSort = "device_id",
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
        window_s: int = 300,
        now: float | None = None,
    ) -> OverviewPage:
        """The dashboard's fleet table: a filtered, sorted page of devices with their latest
        throughput, p95 latency, fallback share, drift and recent results, plus fleet-wide counts."""

    # --- cloud fallback ---------------------------------------------------------------------------
    @abc.abstractmethod
    def fallback_stats(
        self, device_id: str | None, *, since: float, until: float, limit: int = 5000
    ) -> list[DeviceFallback]:
        """Per device (one, or every device with results or a fallback status): cloud share and
        reasons of the results stored in [since, until), and its last ``status.fallback``."""

    # --- hard examples (cloud fallback) ----------------------------------------------------------
    @abc.abstractmethod
    def store_hard_examples(self, examples: Sequence[HardExample]) -> int: ...

    @abc.abstractmethod
    def hard_examples(
        self,
        *,
        device_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
        with_windows: bool = False,
    ) -> tuple[list[HardExample], int]:
        """A page of hard examples, oldest first, and how many match in all."""

    # --- commands -------------------------------------------------------------------------------
    @abc.abstractmethod
    def insert_command(self, record: CommandRecord) -> None: ...

    @abc.abstractmethod
    def set_command_status(
        self, command_id: str, status: CommandStatus, *, at: float, detail: str | None = None
    ) -> bool: ...

    @abc.abstractmethod
    def get_command(self, command_id: str) -> CommandRecord | None: ...

    @abc.abstractmethod
    def list_commands(self, device_id: str, *, limit: int = 50) -> list[CommandRecord]: ...

    # --- auth -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def add_token(self, token_id: str, name: str, role: Role, token_hash: str, *, at: float) -> None: ...

    @abc.abstractmethod
    def find_token(self, token_hash: str, *, at: float) -> TokenInfo | None:
        """The live (not revoked) token with this hash; records the use."""

    @abc.abstractmethod
    def list_tokens(self) -> list[TokenInfo]: ...

    @abc.abstractmethod
    def revoke_token(self, token_id: str, *, at: float) -> bool: ...

    @abc.abstractmethod
    def upsert_user(self, username: str, password_hash: str, role: Role, *, at: float) -> None: ...

    @abc.abstractmethod
    def create_first_user(self, username: str, password_hash: str, role: Role, *, at: float) -> bool:
        """Create the user only while no user exists at all (atomically); True when it was created."""

    @abc.abstractmethod
    def get_user(self, username: str) -> tuple[str, Role] | None:
        """(password hash, role) of the user, or None."""

    @abc.abstractmethod
    def add_session(
        self, session_hash: str, username: str, role: Role, *, at: float, expires_at: float
    ) -> None: ...

    @abc.abstractmethod
    def get_session(self, session_hash: str, *, at: float) -> tuple[str, Role] | None: ...

    @abc.abstractmethod
    def delete_session(self, session_hash: str) -> None: ...

    # --- retention ------------------------------------------------------------------------------
    @abc.abstractmethod
    def downsample_telemetry(self, *, since: float, until: float) -> int:
        """(Re)compute minute aggregates from raw and hour aggregates from minutes over [since, until)."""

    @abc.abstractmethod
    def purge(self, cutoffs: RetentionCutoffs) -> PurgeReport: ...

    @abc.abstractmethod
    def get_state(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def set_state(self, key: str, value: str) -> None: ...

    # --- OTA (issue 16; edgefleet/controller/dal/sql_ota.py) ------------------------------------
    @abc.abstractmethod
    def put_ota_bundle(self, bundle: BundleInfo) -> BundleInfo: ...

    @abc.abstractmethod
    def get_ota_bundle(self, name: str, version: str) -> BundleInfo | None: ...

    @abc.abstractmethod
    def list_ota_bundles(self) -> list[BundleInfo]: ...

    @abc.abstractmethod
    def put_ota_state(self, state: OtaDeviceState) -> None: ...

    @abc.abstractmethod
    def ota_states(self, device_id: str, *, limit: int = 20) -> list[OtaDeviceState]: ...

    @abc.abstractmethod
    def put_ota_offer(self, offer: OfferRecord) -> None: ...

    @abc.abstractmethod
    def get_ota_offer(self, offer_id: str) -> OfferRecord | None: ...

    # --- OTA campaigns (issue 16; edgefleet/controller/dal/sql_campaigns.py) --------------------
    @abc.abstractmethod
    def put_campaign(self, campaign: CampaignRecord, devices: list[CampaignDevice]) -> None: ...

    @abc.abstractmethod
    def get_campaign(self, campaign_id: str) -> CampaignRecord | None: ...

    @abc.abstractmethod
    def list_campaigns(self, *, statuses: tuple[str, ...] = (), limit: int = 100) -> list[CampaignRecord]: ...

    @abc.abstractmethod
    def update_campaign(
        self,
        campaign_id: str,
        *,
        at: float,
        status: str | None = None,
        stage: int | None = None,
        detail: str | None = None,
        only_if_status: tuple[str, ...] = (),
    ) -> bool: ...

    @abc.abstractmethod
    def campaign_devices(self, campaign_id: str) -> list[CampaignDevice]: ...

    @abc.abstractmethod
    def update_campaign_device(self, device: CampaignDevice) -> None: ...

    @abc.abstractmethod
    def ota_offer_states(self, offer_ids: list[str]) -> dict[str, tuple[str, float, str | None]]: ...
