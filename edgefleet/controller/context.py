"""What the HTTP routes need from the controller process, in one object the app carries."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from edgefleet.controller.commands import CommandService
from edgefleet.controller.config import ControllerConfig
from edgefleet.controller.dal import Database
from edgefleet.controller.ingest import IngestStats
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.ota_hosting import OtaHost
from edgefleet.controller.schemas import IngestStatsOut

__all__ = ["ControllerContext"]


@dataclass
class ControllerContext:
    """What the routes need; the service builds one, tests may build their own.

    ``create_app`` stores it on ``app.state``; routes receive it through the ``Context`` dependency
    (:mod:`edgefleet.controller.dependencies`), never through a module global.
    """

    config: ControllerConfig
    database: Database
    commands: CommandService
    changes: FleetChanges
    ingest_stats: Callable[[], IngestStatsOut] | None = None
    ingest_counters: IngestStats | None = None
    queue_depth: Callable[[], int] | None = None
    mqtt_connected: Callable[[], bool] | None = None
    clock: Callable[[], float] = time.time
    ota: OtaHost | None = None
