"""The agent's local SQLite store: results, metrics, events and the outbox sync drains.

See ``docs/store.md``. Import from here, e.g. ``from edgefleet.agent.store import Store, StoreConfig``.
"""

from __future__ import annotations

from edgefleet.agent.store.backup import (
    BackupReport,
    DatabaseInfo,
    backup,
    check_database,
    describe_database,
    restore,
)
from edgefleet.agent.store.config import DEFAULT_STORE_PATH, StoreConfig, Synchronous
from edgefleet.agent.store.connection import StoreFullError
from edgefleet.agent.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from edgefleet.agent.store.records import (
    PRIORITY_EVENTS,
    PRIORITY_RESULTS,
    PRIORITY_TELEMETRY,
    MetricSample,
    OutboxItem,
    ResultRecord,
    StoreStats,
)
from edgefleet.agent.store.retention import RetentionReport
from edgefleet.agent.store.store import Store

__all__ = [
    "DEFAULT_STORE_PATH",
    "MIGRATIONS",
    "PRIORITY_EVENTS",
    "PRIORITY_RESULTS",
    "PRIORITY_TELEMETRY",
    "SCHEMA_VERSION",
    "BackupReport",
    "DatabaseInfo",
    "MetricSample",
    "OutboxItem",
    "ResultRecord",
    "RetentionReport",
    "Store",
    "StoreConfig",
    "StoreFullError",
    "StoreStats",
    "Synchronous",
    "backup",
    "check_database",
    "describe_database",
    "migrate",
    "restore",
]
