"""What a starting agent waits for, said once and plainly.

The pipeline retries a missing bundle and the sync reconnects to the broker by themselves, which
is right for a device that gets its files and network later, but a new user running a config
for the first time needs to hear, at start-up, what is missing and what happens meanwhile.
"""

from __future__ import annotations

import logging
import socket

from edgefleet.agent.config import AgentConfig

__all__ = ["announce_waits", "waiting_for"]

log = logging.getLogger("edgefleet.agent")

_PROBE_TIMEOUT_S = 1.0


def _broker_reachable(host: str, port: int) -> str | None:
    """None when something accepts TCP connections there, else why not."""
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def waiting_for(config: AgentConfig) -> list[str]:
    """One line per thing the agent cannot have yet, with what it does meanwhile."""
    waits: list[str] = []
    bundle = config.model.bundle
    if not bundle.exists():
        waits.append(
            f"the model bundle {bundle} (it does not exist): no results until it appears; the agent "
            "checks again every few seconds. Build one with `edgefleet bundle build`, or try "
            "`edgefleet config example --demo` for a config that runs with the shipped one"
        )
    if config.sync.enabled:
        why = _broker_reachable(config.sync.host, config.sync.port)
        if why is not None:
            waits.append(
                f"the MQTT broker {config.sync.host}:{config.sync.port} ({why}): results are kept in "
                f"the store {config.store.path} and sent once it answers. Set [sync] enabled = false "
                "to run without one"
            )
    return waits


def announce_waits(config: AgentConfig) -> list[str]:
    """Log, once, each thing the agent waits for (a warning, so every log level shows it)."""
    waits = waiting_for(config)
    for wait in waits:
        log.warning("waiting for %s", wait)
    return waits
