"""``set_config`` from the controller: validate one key, keep it across restarts, say how it applies.

A remote setting is validated against the whole :class:`AgentConfig` (the same rules as the
file) before anything changes. Accepted settings are kept in ``config_overrides.json`` in the
state directory and laid over the config file at every start and reload, so a reboot or a
``SIGHUP`` does not silently undo them. ``logging.*`` applies live; every other key needs a
pipeline reload. ``device.*``, ``sync.*`` and ``ota.*`` are refused: a wrong value there could
cut the device off from the controller or widen what it trusts, with no way back remotely.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgefleet.agent.config import AgentConfig
from edgefleet.errors import ConfigError, ConfigIssue

__all__ = [
    "LIVE_PREFIXES",
    "OVERRIDES_FILENAME",
    "REFUSED_PREFIXES",
    "apply_overrides",
    "apply_saved_overrides",
    "apply_setting",
    "is_live",
    "read_overrides",
    "write_overrides",
]

OVERRIDES_FILENAME = "config_overrides.json"
LIVE_PREFIXES = ("logging.",)
REFUSED_PREFIXES = ("device.", "sync.", "ota.")


def is_live(key: str) -> bool:
    """True when ``key`` applies without rebuilding the pipeline."""
    return key.startswith(LIVE_PREFIXES)


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"set_config key {key!r}: {where!r} is not an index of a {len(node)}-item list",
                    issues=[ConfigIssue(key, value, f"an index 0..{len(node) - 1} at {where!r}")],
                    hint="list items are addressed by position, e.g. sources.0.rate_hz",
                )
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(
                f"set_config key {key!r}: {where!r} is a value, not a section",
                issues=[ConfigIssue(key, value, f"a key inside a section; {where!r} holds a value")],
                hint="name a key such as batching.max_batch_size",
            )
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(
                f"set_config key {key!r}: {last!r} is not an index of a {len(node)}-item list",
                hint="list items are addressed by position, e.g. sources.0",
            )
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(
            f"set_config key {key!r}: {'.'.join(parts[:-1])!r} is a value, not a section",
            hint="name a key such as batching.max_batch_size",
        )


def apply_setting(config: AgentConfig, key: str, value: Any) -> AgentConfig:
    """``config`` with ``key`` set to ``value``, validated; ConfigError naming each bad key."""
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"set_config key {key!r} is not a dotted key", hint="e.g. batching.max_batch_size")
    if key.startswith(REFUSED_PREFIXES) or key in {p.rstrip(".") for p in REFUSED_PREFIXES}:
        raise ConfigError(
            f"set_config refuses {key!r}: {', '.join(p + '*' for p in REFUSED_PREFIXES)} can only be"
            " changed in the config file on the device",
            issues=[ConfigIssue(key, value, "a key outside device.*, sync.* and ota.*")],
            hint="edit the agent config file on the device and send SIGHUP",
        )
    data = config.model_dump(mode="python", exclude_unset=False)
    _set_path(data, key, value)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        issues = [
            ConfigIssue(".".join(str(p) for p in err["loc"]), err.get("input"), err["msg"])
            for err in exc.errors()
        ]
        raise ConfigError(
            f"set_config {key} = {value!r} makes the agent config invalid",
            issues=issues,
            hint="send a value of the type and range the key expects (`edgefleet config example`)",
        ) from None


def apply_overrides(config: AgentConfig, overrides: dict[str, Any]) -> AgentConfig:
    """``config`` with every override applied in order; ConfigError at the first one that no longer fits."""
    for key, value in overrides.items():
        config = apply_setting(config, key, value)
    return config


def read_overrides(state_dir: Path) -> dict[str, Any]:
    path = state_dir / OVERRIDES_FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"remote config overrides {path} cannot be read: {exc}",
            hint=f"delete {path} to drop every setting made with set_config",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"remote config overrides {path} is not a JSON object", hint=f"delete {path}")
    return data


def write_overrides(state_dir: Path, overrides: dict[str, Any]) -> None:
    """Write, fsync, rename: a power cut leaves the old file or the new one, never half of one."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / OVERRIDES_FILENAME
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(overrides, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def apply_saved_overrides(config: AgentConfig) -> tuple[AgentConfig, str | None]:
    """``config`` with the saved overrides laid over it, or unchanged plus why they were dropped.

    When an edit of the file makes the overrides invalid, the file wins and the device stays up.
    """
    try:
        overrides = read_overrides(config.device.state_dir)
        return (apply_overrides(config, overrides) if overrides else config), None
    except ConfigError as exc:
        return config, f"remote config overrides not applied: {exc}"
