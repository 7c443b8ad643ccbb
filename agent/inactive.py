"""Configuration that is parsed and documented but does nothing yet, said out loud.

``model.cloud_bundle`` describes a feature whose code has not landed (and ``[fallback]`` needs
``[sync]``); ``[drift]`` is active (:mod:`edgefleet.agent.drift_monitor`).
Until they land, ``edgefleet config check`` prints each of these as a note and the agent logs a
warning at start and records an event, so that nobody trusts a section that does nothing. When
a feature lands, its entry here goes.
"""

from __future__ import annotations

from edgefleet.agent.config import AgentConfig

__all__ = ["inactive_settings"]


def inactive_settings(config: AgentConfig) -> list[str]:
    """One sentence per configured section or key that has no effect in this version."""
    found = []
    if config.fallback.enabled and not config.sync.enabled:
        found.append(
            "[fallback] is enabled but [sync] is not: the cloud is reached over the sync broker, so "
            "no window is sent to the cloud; every window is answered by the edge model"
        )
    if config.fallback.enabled and config.fallback.on_drift and not config.drift.enabled:
        found.append(
            "fallback.on_drift needs [drift] enabled: without the drift monitor no alert is ever "
            "active, so no window goes to the cloud for drift"
        )
    replaced = sorted(
        config.fallback.model_fields_set & {"min_confidence", "min_margin", "max_entropy", "models"}
    )
    if config.fallback.enabled and config.fallback.target_share is not None and replaced:
        found.append(
            f"fallback.target_share replaces the fixed confidence thresholds: {', '.join(replaced)} "
            "set in [fallback] have no effect (remove them, or unset target_share)"
        )
    unused = sorted(config.fallback.model_fields_set & {"target_window", "score"})
    if config.fallback.enabled and config.fallback.target_share is None and unused:
        found.append(
            f"fallback.{' and fallback.'.join(unused)} only rank windows for fallback.target_share, "
            "which is not set: they have no effect"
        )
    if config.model.cloud_bundle is not None:
        found.append(
            f"model.cloud_bundle ({config.model.cloud_bundle}) is not used yet: nothing runs it in "
            "this version"
        )
    return found
