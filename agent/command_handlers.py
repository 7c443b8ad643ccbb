"""The agent's command handlers: what ``ping``, ``restart_pipeline``, ``set_config``... do.

They run on the sync thread, so they only validate, save and set flags: anything that rebuilds
the pipeline is deferred to the main loop's reload, which finishes the command (see
:meth:`CommandRegistry.finish`).
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol

from edgefleet.agent.commands import CommandRegistry, Reply
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.remote_config import apply_setting, is_live, read_overrides, write_overrides
from edgefleet.cloud_sync.protocol import CommandBody
from edgefleet.errors import ConfigError

__all__ = ["AgentControls", "register_agent_commands"]

log = logging.getLogger(__name__)


class AgentControls(Protocol):
    """What the handlers need from the running agent."""

    @property
    def config(self) -> AgentConfig | None: ...

    def request_reload(self) -> None: ...

    def apply_live_config(self, config: AgentConfig) -> None: ...


def register_agent_commands(registry: CommandRegistry, agent: AgentControls) -> None:
    for name in ("ping", "report_status", "flush_outbox"):
        # The sync service itself acts on these (status publish, outbox wake-up).
        registry.register(name, _done)
    registry.register("restart_pipeline", functools.partial(_restart_pipeline, registry, agent))
    registry.register("set_config", functools.partial(_set_config, registry, agent))


def _done(body: CommandBody) -> Reply:
    del body
    return Reply("done")


def _restart_pipeline(registry: CommandRegistry, agent: AgentControls, body: CommandBody) -> Reply:
    log.info("restart_pipeline command received; rebuilding the pipeline")
    registry.defer(body)
    agent.request_reload()
    return Reply("acked", "pipeline reload queued")


def _set_config(registry: CommandRegistry, agent: AgentControls, body: CommandBody) -> Reply:
    config = agent.config
    if config is None:
        return Reply("failed", "the agent is not running yet")
    key, value = body.args.get("key"), body.args.get("value")
    if not isinstance(key, str):
        return Reply("failed", f"set_config needs args.key, a dotted config key; got {key!r}")
    try:
        new = apply_setting(config, key, value)
        state_dir = config.device.state_dir
        overrides = read_overrides(state_dir)
        overrides[key] = value
        write_overrides(state_dir, overrides)
    except ConfigError as exc:
        return Reply("failed", str(exc))
    except OSError as exc:
        return Reply("failed", f"could not save the setting: {exc}")
    if is_live(key):
        agent.apply_live_config(new)
        return Reply("done", f"{key} applied live")
    registry.defer(body)
    agent.request_reload()
    return Reply("acked", f"{key} validated; pipeline reload queued")
