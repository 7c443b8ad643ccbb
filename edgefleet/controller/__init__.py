"""The cloud controller: device registry, MQTT ingest, storage, HTTP API and commands.

Entry points: :class:`edgefleet.controller.service.ControllerService` (the whole process),
:func:`edgefleet.controller.dal.open_database` (storage), and :mod:`edgefleet.controller.api`
(the FastAPI app). Only the configuration is imported here, so that reading a controller config
needs neither FastAPI nor a database driver. See docs/controller.md.
"""

from edgefleet.controller.config import ControllerConfig, example_config_text, load_controller_config

__all__ = ["ControllerConfig", "example_config_text", "load_controller_config"]
