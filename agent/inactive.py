"""Configuration that is parsed and documented but does nothing yet, said out loud.

``[drift]``, ``[fallback]`` and ``model.cloud_bundle`` describe features whose code has not
landed: no drift monitor and no fallback router is built from them. Until it lands,
``edgefleet config check`` prints each of these as a note and the agent logs a warning at start
and records an event, so that nobody trusts a section that does nothing. When a feature lands,
its entry here goes.
"""

from __future__ import annotations

from edgefleet.agent.config import AgentConfig

__all__ = ["inactive_settings"]


def inactive_settings(config: AgentConfig) -> list[str]:
    """One sentence per configured section or key that has no effect in this version."""
    found = []
    if config.drift.enabled:
        found.append(
            "[drift] is not active yet: no drift monitor runs in this version, so no drift is "
            "computed or reported whatever its keys say (set drift.enabled = false to silence this)"
        )
    if config.fallback.enabled or config.fallback.model_fields_set:
        state = "enabled" if config.fallback.enabled else "configured"
        found.append(
            f"[fallback] is {state} but not active yet: no window is sent to the cloud in this "
            "version; every window is answered by the edge model"
        )
    if config.model.cloud_bundle is not None:
        found.append(
            f"model.cloud_bundle ({config.model.cloud_bundle}) is not used yet: nothing runs it in "
            "this version"
        )
    return found
