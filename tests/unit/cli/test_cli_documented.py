"""Every CLI command is documented in the README and answers --help (sqlite-utils' habit)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edgefleet.cli.main import build_parser, iter_commands, main

pytestmark = pytest.mark.unit

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()
COMMANDS = iter_commands(build_parser())


def test_the_cli_has_the_contract_commands() -> None:
    contract = {
        "model inspect", "model run", "model bench", "bundle build", "bundle verify",
        "agent run", "agent status", "results", "config check", "config example",
        "sync status", "device provision", "controller serve", "simulate", "demo",
        "store backup", "store restore",
    }  # fmt: skip
    assert contract <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_is_documented_in_the_readme(command: str) -> None:
    assert f"edgefleet {command}" in README, f"README.md does not document `edgefleet {command}`"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_works(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert "usage: edgefleet" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def _leaf_parsers() -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[prefix] = parser
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, f"{prefix} {name}".strip())

    walk(build_parser(), "")
    return found


LEAVES = _leaf_parsers()


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_command_help_has_a_description(command: str) -> None:
    assert LEAVES[command].description, f"`edgefleet {command} --help` has no description"


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_every_option_has_help(command: str) -> None:
    missing = [
        "/".join(action.option_strings) or action.dest
        for action in LEAVES[command]._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == [], f"`edgefleet {command}`: no help text for {missing}"
