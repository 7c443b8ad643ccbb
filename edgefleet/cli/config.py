"""``edgefleet config``: check, show and print an example of the agent configuration.

None of these commands starts anything: they read the file (and the environment's
``EDGEFLEET_...`` overrides) and report.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet.cli.arguments import print_usage

if TYPE_CHECKING:
    from edgefleet.agent.config import AgentConfig

__all__ = ["dump_toml", "example_text", "register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "config",
        help="check, show or print an example agent configuration",
        description="Validate an agent config file without starting anything.",
    )
    commands = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: print_usage(parser))

    check = commands.add_parser(
        "check", help="validate a config file; lists every error (exit 1 when invalid)"
    )
    check.add_argument("file", type=Path, help="agent config (TOML)")
    check.set_defaults(handler=_check)

    show = commands.add_parser("show", help="print the effective config: file + defaults + environment")
    show.add_argument("file", type=Path, help="agent config (TOML)")
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(handler=_show)

    example = commands.add_parser("example", help="print a commented example config")
    example.set_defaults(handler=_example)


def example_text() -> str:
    """The commented example shipped with the package (``edgefleet/agent/example.toml``)."""
    return resources.files("edgefleet.agent").joinpath("example.toml").read_text(encoding="utf-8")


def _check(args: argparse.Namespace) -> int:
    # imported here: `edgefleet --help` must not load every config model and source
    from edgefleet.agent.config import load_config
    from edgefleet.agent.inactive import inactive_settings

    config = load_config(args.file)
    print(f"ok: {args.file} is a valid agent config")
    for line in _summary(config):
        print(f"  {line}")
    for note in _notes(config):
        print(f"  note: {note}")
    for inactive in inactive_settings(config):
        print(f"  NOT ACTIVE: {inactive}")
    return 0


def _summary(config: AgentConfig) -> list[str]:
    streams = ", ".join(f"{s.name} ({s.type})" for s in config.sources)
    sync = f"{config.sync.host}:{config.sync.port}" if config.sync.enabled else "disabled"
    return [
        f"device: {config.device.id}",
        f"sources: {streams}",
        f"model: {config.model.bundle} (backend {config.model.backend})",
        f"store: {config.store.path}",
        f"sync: {sync}",
        f"fallback: {'enabled' if config.fallback.enabled else 'disabled'}; "
        f"drift: {'enabled' if config.drift.enabled else 'disabled'}",
    ]


def _notes(config: AgentConfig) -> list[str]:
    """Things that are valid but will not work yet on this machine (not errors: devices get files later)."""
    notes = []
    if not config.model.bundle.exists():
        notes.append(f"model.bundle {config.model.bundle} does not exist here")
    for i, source in enumerate(config.sources):
        file = getattr(source, "file", None)
        if isinstance(file, Path) and not file.exists():
            notes.append(f"sources[{i}].file {file} does not exist here")
    return notes


def _show(args: argparse.Namespace) -> int:
    from edgefleet.agent.config import load_config

    data = load_config(args.file).model_dump(mode="json")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"# effective agent config: {args.file} + defaults + EDGEFLEET_* environment")
        print(dump_toml(data), end="")
    return 0


def _example(args: argparse.Namespace) -> int:
    del args
    print(example_text(), end="")
    return 0


# -- a small TOML writer for `config show` (the effective config is plain JSON-like data) ------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dump_toml(data: dict[str, Any]) -> str:
    """TOML for JSON-like data; ``None`` values are left out (TOML has no null)."""
    lines: list[str] = []
    _table(lines, [], data, array_item=False)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _table(lines: list[str], path: list[str], table: dict[str, Any], *, array_item: bool) -> None:
    if path:
        dotted = ".".join(_key(p) for p in path)
        lines.extend(["", f"[[{dotted}]]" if array_item else f"[{dotted}]"])
    for key, value in table.items():
        if value is not None and not _is_table(value) and not _is_table_list(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if _is_table(value):
            _table(lines, [*path, key], value, array_item=False)
        elif _is_table_list(value):
            for item in value:
                _table(lines, [*path, key], item, array_item=True)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + inner + "}"
    return json.dumps(str(value))
